using Akka.Actor;
using Akka.Event;
using Islands.Diffusion;
using Islands.Diffusion.Serving;

namespace Islands.Actors.Serving;

/// <summary>Asks the registry for the models it knows.</summary>
public sealed record GetPublishedModels : IIslandsMessage
{
    public static readonly GetPublishedModels Instance = new();
}

/// <summary>
/// The verified published experts (one per partition) and router. Also published on the node's event stream whenever it
/// changes, so loaded samplers and routers pick up a newer checkpoint by themselves.
/// </summary>
public sealed record PublishedModelsSnapshot(long Version, string Store, IReadOnlyList<PublishedModel> Experts, PublishedModel? Router,
    IReadOnlyList<string> Refused, DateTimeOffset ScannedUtc) : IIslandsMessage
{
    public PublishedModel? Expert(int index) => Experts.FirstOrDefault(e => e.Expert == index);
}

/// <summary>An island announces a publication (through the serving cluster's receptionist) so the registry rescans now.</summary>
public sealed record ModelPublished(string Island, string Job, long Step) : IIslandsMessage;

/// <summary>
/// One per serving node: knows what the islands have published by scanning the checkpoint store (on start, every
/// rescan interval, and when an island announces a publication). Only publications whose every hash verifies are
/// offered; what it refuses is listed with the reason.
/// </summary>
public sealed class ModelRegistry : ReceiveActor, IWithTimers
{
    private sealed record Rescan
    {
        public static readonly Rescan Instance = new();
    }

    private readonly string store;
    private readonly Dictionary<string, (DateTime Written, long Length, PublishedModel Model)> verified = [];
    private readonly ILoggingAdapter log = Context.GetLogger();
    private PublishedModelsSnapshot snapshot;

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(ServingSettings settings) =>
        Akka.Actor.Props.Create(() => new ModelRegistry(settings)).WithDispatcher(ServingSettings.TorchDispatcher);

    public ModelRegistry(ServingSettings settings)
    {
        store = settings.Store;
        snapshot = new PublishedModelsSnapshot(0, store, [], null, [], DateTimeOffset.UtcNow);
        Receive<GetPublishedModels>(_ => Sender.Tell(snapshot));
        Receive<Rescan>(_ => Scan());
        Receive<ModelPublished>(m =>
        {
            log.Info("island {0} announced {1} at step {2}; rescanning {3}", m.Island, m.Job, m.Step, store);
            Scan();
        });
        Timers.StartPeriodicTimer("rescan", Rescan.Instance, settings.RescanInterval);
    }

    protected override void PreStart() => Scan();

    private void Scan()
    {
        PublishedModelScan scan;
        try
        {
            scan = PublishedModels.Scan(store, verified);
        }
        catch (IslandsException e)
        {
            scan = new PublishedModelScan([], null, [e.Message]);
        }
        var changed = !Same(scan.Experts, snapshot.Experts)
            || !Same(scan.Router is null ? [] : [scan.Router], snapshot.Router is null ? [] : [snapshot.Router])
            || !scan.Refused.SequenceEqual(snapshot.Refused);
        if (!changed) return;
        snapshot = new PublishedModelsSnapshot(snapshot.Version + 1, store, scan.Experts, scan.Router, scan.Refused, DateTimeOffset.UtcNow);
        log.Info("published models v{0}: experts [{1}], router {2}{3}", snapshot.Version,
            string.Join(", ", scan.Experts.Select(e => $"{e.Expert}@{e.Step}")), scan.Router is null ? "none" : $"@{scan.Router.Step}",
            scan.Refused.Count > 0 ? "; refused: " + string.Join("; ", scan.Refused) : "");
        Context.System.EventStream.Publish(snapshot);
    }

    private static bool Same(IReadOnlyList<PublishedModel> a, IReadOnlyList<PublishedModel> b) =>
        a.Select(m => m.ManifestSha256 + m.RunDirectory).SequenceEqual(b.Select(m => m.ManifestSha256 + m.RunDirectory));
}
