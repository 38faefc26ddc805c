using Akka.Actor;
using Islands.Diffusion;
using Islands.Diffusion.Distillation;
using Islands.Diffusion.Sampling;
using Islands.Diffusion.Serving;
using static TorchSharp.torch;

namespace Islands.Actors.Serving;

/// <summary>Opens a <see cref="ServedPrior"/> routed by strategy, telling log of retries, for a job with its cancellation.</summary>
public delegate ServedPrior ServedPriorFactory(string strategy, Action<string>? log, CancellationToken cancel);

/// <summary>
/// The serving cluster's ensemble as a distillation prior: every evaluation is a score query to the router entity,
/// which batches it with generations' rows and asks the sampler entities of the experts it routes to. A query that is
/// not answered in time (its router's node died and the shard is moving) or that finds nothing to serve is sent again,
/// so a served distillation rides out a node's death as a generation does; an expert left out of a step degrades that
/// step's rows (renormalised over the others) and is counted. Blocks the calling thread: a job runs it on its own task.
/// </summary>
public sealed class ServedPrior : IDistillationPrior
{
    private readonly IActorRef routers;
    private readonly string strategy;
    private readonly TimeSpan attemptTimeout;
    private readonly TimeSpan giveUpAfter;
    private readonly Action<string>? log;
    private readonly CancellationToken cancel;
    private readonly int? degradedClassCount;

    private ServedPrior(IActorRef routers, string strategy, (long C, long H, long W) shape, int classCount, int? degradedClassCount,
        TimeSpan attemptTimeout, TimeSpan giveUpAfter, Action<string>? log, CancellationToken cancel)
    {
        this.routers = routers;
        this.strategy = strategy;
        this.attemptTimeout = attemptTimeout;
        this.giveUpAfter = giveUpAfter;
        this.log = log;
        this.cancel = cancel;
        this.degradedClassCount = degradedClassCount;
        Shape = shape;
        ClassCount = classCount;
    }

    public (long C, long H, long W) Shape { get; }
    public int ClassCount { get; }
    /// <summary>Rows answered without some expert they were routed to (that expert missed its deadline or was down).</summary>
    public long DegradedRows { get; private set; }
    /// <summary>Queries sent again after no answer in time, or a 503/504.</summary>
    public int Retries { get; private set; }

    /// <summary>Reads the published experts' shape and classes from the registry, then queries routers for every evaluation.</summary>
    public static ServedPrior Connect(IActorRef registry, IActorRef routers, ServingSettings settings, string strategy, Action<string>? log,
        CancellationToken cancel)
    {
        var snapshot = registry.Ask<PublishedModelsSnapshot>(GetPublishedModels.Instance, TimeSpan.FromSeconds(10), cancel).GetAwaiter().GetResult();
        if (snapshot.Experts.Count == 0 || snapshot.Router is null)
            throw new ConfigException("store", $"{snapshot.Store}: needs published experts and a router (found {snapshot.Experts.Count} experts, " +
                $"{(snapshot.Router is null ? "no" : "a")} router)");
        return new ServedPrior(routers, strategy, ServedModels.ImageShape(snapshot.Experts[0]), ServedModels.Classes(snapshot.Experts[0]).Count,
            ServedModels.DegradedClassCount(snapshot.Experts), settings.ExpertDeadline * 2 + TimeSpan.FromSeconds(1), settings.RequestTimeout * 4,
            log, cancel);
    }

    public long? DegradedLabel(long c) => degradedClassCount is { } d ? Diffusion.Modules.UNet.DegradedLabel(d, c) : null;

    public VelocityField Field(double guidance = 1) => (x, t, classes, _) => Query(x, t, classes, guidance);

    private Tensor Query(Tensor x, double t, Tensor classes, double guidance)
    {
        var n = (int)x.shape[0];
        var labels = classes.to_type(ScalarType.Int64).cpu().data<long>().ToArray();
        var payload = GuidedVelocity.ToBytes(x);
        var started = DateTime.UtcNow;
        while (true)
        {
            cancel.ThrowIfCancellationRequested();
            var query = new ScoreQuery("s" + Guid.NewGuid().ToString("N"), ServingSettings.DefaultEnsemble, Enumerable.Repeat((float)t, n).ToArray(),
                labels, Enumerable.Repeat((float)guidance, n).ToArray(), strategy, null) { Payload = payload };
            string why;
            try
            {
                switch (routers.Ask<object>(query, attemptTimeout, cancel).GetAwaiter().GetResult())
                {
                    case ScoreAnswer answer:
                        if (answer.LeftOutExperts.Length > 0) DegradedRows += n;
                        return GuidedVelocity.FromBytes(answer.Payload, x.shape).to(x.device);
                    case GenerationFailed { Status: 400 } refused:
                        throw new ConfigException("x", refused.Reason);
                    case GenerationFailed failed:
                        why = $"{failed.Status}: {failed.Reason}";
                        break;
                    case var other:
                        throw new IslandsException($"the router answered a score query with {other?.GetType().Name}");
                }
            }
            catch (AskTimeoutException)
            {
                why = $"no answer within {attemptTimeout.TotalSeconds:0} s";
            }
            if (DateTime.UtcNow - started > giveUpAfter)
                throw new IslandsException($"the serving cluster answered no score query for {giveUpAfter.TotalSeconds:0} s (last: {why})");
            Retries++;
            log?.Invoke($"score query: {why}; sending it again");
            Task.Delay(TimeSpan.FromMilliseconds(250), cancel).GetAwaiter().GetResult();
        }
    }

    public void Dispose() { }
}
