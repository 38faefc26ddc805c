using System.Diagnostics;
using System.Globalization;
using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Event;
using Islands.Diffusion;
using Islands.Diffusion.Sampling;
using Islands.Diffusion.Serving;

namespace Islands.Actors.Serving;

/// <summary>
/// A sharded entity per expert ("expert-K"): loads the expert's published checkpoint once (hashes verified first) and
/// answers batched velocity requests. It reloads by itself when the registry sees a newer publication. Sharding
/// passivates it after the configured idle time.
/// </summary>
public sealed class SamplerActor : ReceiveActor, IWithStash
{
    public const string RegionName = "sampler";

    private readonly int expert;
    private readonly string precision;
    private readonly IActorRef registry;
    private readonly TimeSpan injectedDelay;
    private readonly ILoggingAdapter log = Context.GetLogger();
    private ServedExpert? loaded;
    private string? unavailable;

    public IStash Stash { get; set; } = null!;

    public static Props Props(string entityId, ServingSettings settings, IActorRef registry) =>
        Akka.Actor.Props.Create(() => new SamplerActor(ExpertOf(entityId), settings.Precision, registry,
            ExpertOf(entityId) == settings.SlowExpert ? settings.SlowExpertDelay : TimeSpan.Zero)).WithDispatcher(ServingSettings.TorchDispatcher);

    public static string EntityId(int expert) => "expert-" + expert.ToString(CultureInfo.InvariantCulture);

    private static int ExpertOf(string entityId) =>
        entityId.StartsWith("expert-", StringComparison.Ordinal)
            && int.TryParse(entityId["expert-".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out var k)
            ? k : throw new ArgumentException($"'{entityId}' is not a sampler entity id (expert-K)");

    public SamplerActor(int expert, string precision, IActorRef registry, TimeSpan injectedDelay = default)
    {
        this.expert = expert;
        this.precision = precision;
        this.registry = registry;
        this.injectedDelay = injectedDelay;
        Become(Loading);
    }

    protected override void PreStart()
    {
        if (injectedDelay > TimeSpan.Zero) log.Warning("expert {0}: fault injection holds every answer back by {1} (islands:serving:faults)", expert,
            injectedDelay);
        Context.System.EventStream.Subscribe(Self, typeof(PublishedModelsSnapshot));
        registry.Tell(GetPublishedModels.Instance);
    }

    protected override void PostStop()
    {
        Context.System.EventStream.Unsubscribe(Self);
        loaded?.Dispose();
    }

    private void Loading()
    {
        Receive<PublishedModelsSnapshot>(snapshot =>
        {
            Load(snapshot);
            Become(Ready);
            Stash.UnstashAll();
        });
        ReceiveAny(_ => Stash.Stash());
    }

    private void Ready()
    {
        Receive<PublishedModelsSnapshot>(snapshot =>
        {
            if (snapshot.Expert(expert)?.ManifestSha256 != loaded?.Published.ManifestSha256) Load(snapshot);
        });
        Receive<ExpertVelocityRequest>(Answer);
    }

    private void Load(PublishedModelsSnapshot snapshot)
    {
        var published = snapshot.Expert(expert);
        if (published is null)
        {
            unavailable = $"expert {expert} is not published in {snapshot.Store}";
            log.Warning(unavailable);
            return;
        }
        try
        {
            using var span = ServingTelemetry.Source.StartActivity("sampler.load");
            span?.SetTag("islands.expert", expert);
            var next = ServedModels.LoadExpert(published, precision);
            loaded?.Dispose();
            loaded = next;
            unavailable = null;
            log.Info("expert {0}: loaded {1} (step {2}, {3})", expert, published.CheckpointDirectory, published.Step, precision);
        }
        catch (IslandsException e)
        {
            // Keep serving the checkpoint already loaded, if any; a corrupt newer one is never used.
            if (loaded is null) unavailable = e.Message;
            log.Error("expert {0}: refusing {1}: {2}", expert, published.CheckpointDirectory, e.Message);
        }
    }

    private void Answer(ExpertVelocityRequest request)
    {
        if (loaded is null)
        {
            Sender.Tell(new ExpertVelocityFailed(request.PlanId, expert, unavailable ?? $"expert {expert} is not loaded"));
            return;
        }
        using var span = ServingTelemetry.StartFrom("sampler.velocity", request.TraceParent, ActivityKind.Server);
        span?.SetTag("islands.expert", expert);
        span?.SetTag("islands.rows", request.T.Length);
        var c = loaded.Config;
        byte[] v;
        try
        {
            v = GuidedVelocity.Evaluate(loaded.Model, request.Payload, request.T, request.Classes, request.Cfg,
                c.Shape);
        }
        catch (ArgumentException e)
        {
            Sender.Tell(new ExpertVelocityFailed(request.PlanId, expert, e.Message));
            return;
        }
        // Blocks this entity's own pinned thread, so requests queue behind it as they would on a slowed node.
        if (injectedDelay > TimeSpan.Zero) Thread.Sleep(injectedDelay);
        Sender.Tell(new ExpertVelocityReply(request.PlanId, expert, loaded.Published.ManifestSha256, loaded.Published.Step) { Payload = v });
    }

    /// <summary>Routes velocity requests to "expert-K" entities; shards spread experts over the serving nodes.</summary>
    public sealed class MessageExtractor(int shards) : HashCodeMessageExtractor(shards)
    {
        public override string? EntityId(object message) => message is ExpertVelocityRequest r ? SamplerActor.EntityId(r.Expert) : null;
    }
}
