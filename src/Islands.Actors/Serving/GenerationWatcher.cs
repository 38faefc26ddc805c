using System.Threading.Channels;
using Akka.Actor;

namespace Islands.Actors.Serving;

/// <summary>The watcher re-sent its request (local to the node: written to the request's channel, never sent).</summary>
public sealed record GenerationRetried(string Id, int Attempt) : IIslandsMessage;

/// <summary>
/// Waits for one generation on behalf of an HTTP request on this node, and passes the router's messages to the request
/// through a channel. If nothing arrives within the progress timeout (the router's node died, its shard is moving), it
/// sends the request again under the same id: the router joins it to the running generation or answers it from the
/// stored result, so a retry never computes it twice. It gives up, with a 504, only at the request timeout.
/// </summary>
public sealed class GenerationWatcher : ReceiveActor, IWithTimers
{
    private sealed record GiveUp
    {
        public static readonly GiveUp Instance = new();
    }

    private readonly ChannelWriter<IIslandsMessage> events;

    private int retries;

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(IActorRef routers, Generate request, ChannelWriter<IIslandsMessage> events, ServingSettings settings) =>
        Akka.Actor.Props.Create(() => new GenerationWatcher(routers, request, events, settings));

    public GenerationWatcher(IActorRef routers, Generate request, ChannelWriter<IIslandsMessage> events, ServingSettings settings)
    {
        this.events = events;
        routers.Tell(request);
        Context.SetReceiveTimeout(settings.ProgressTimeout);
        Timers.StartSingleTimer("give-up", GiveUp.Instance, settings.RequestTimeout + settings.ProgressTimeout);
        Receive<GenerationAccepted>(events.TryWrite);
        Receive<GenerationProgress>(events.TryWrite);
        Receive<GenerationCompleted>(m => Finish(m));
        Receive<GenerationFailed>(m => Finish(m));
        Receive<ReceiveTimeout>(_ =>
        {
            events.TryWrite(new GenerationRetried(request.Id, ++retries));
            routers.Tell(request);
        });
        Receive<GiveUp>(_ => Finish(new GenerationFailed(request.Id, 504,
            $"no answer from the serving cluster within {(settings.RequestTimeout + settings.ProgressTimeout).TotalSeconds:0} s")));
    }

    private void Finish(IIslandsMessage last)
    {
        events.TryWrite(last);
        events.TryComplete();
        Context.Stop(Self);
    }

    protected override void PostStop() => events.TryComplete();
}
