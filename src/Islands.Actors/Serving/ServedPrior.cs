using Akka.Actor;
using Islands.Diffusion;
using Islands.Diffusion.Distillation;
using Islands.Diffusion.Sampling;
using Islands.Diffusion.Serving;
using static TorchSharp.torch;

namespace Islands.Actors.Serving;

/// <summary>Opens a <see cref="ServedPrior"/> routed by strategy, counting into counters and telling log of retries.</summary>
public delegate ServedPrior ServedPriorFactory(string strategy, ServedPriorCounters counters, Action<string>? log, CancellationToken cancel);

/// <summary>How a job's score queries fared, over every prior it opened (a resume, a rollback); safe to read from any thread.</summary>
public sealed class ServedPriorCounters(long degradedRows = 0, int retries = 0)
{
    private long degradedRows = degradedRows;
    private int retries = retries;

    /// <summary>Rows answered without some expert they were routed to (that expert missed its deadline or was down).</summary>
    public long DegradedRows => Interlocked.Read(ref degradedRows);
    /// <summary>Queries sent again after no answer in time, or a 503/504.</summary>
    public int Retries => Volatile.Read(ref retries);

    internal void Degraded(long rows) => Interlocked.Add(ref degradedRows, rows);

    internal void Retried() => Interlocked.Increment(ref retries);
}

/// <summary>
/// The serving cluster's ensemble as a distillation prior: every evaluation is a score query to the router entity,
/// which batches it with generations' rows and asks the sampler entities of the experts it routes to. A query not
/// answered in time (its router's node died and the shard is moving) or that finds nothing to serve is sent again
/// under the same id (a router that still has it only answers the new sender), until the job is cancelled; so a served
/// distillation rides out a node's death as a generation does. An expert left out of a step degrades that step's rows
/// (renormalised over the others) and is counted. Blocks the calling thread: a job runs it on its own task.
/// </summary>
public sealed class ServedPrior : IDistillationPrior
{
    private static readonly TimeSpan RetryDelay = TimeSpan.FromMilliseconds(250);
    private readonly IActorRef routers;
    private readonly string strategy;
    private readonly TimeSpan attemptTimeout;
    private readonly ServedPriorCounters counters;
    private readonly Action<string>? log;
    private readonly CancellationToken cancel;
    private readonly int? degradedClassCount;

    private ServedPrior(IActorRef routers, string strategy, PublishedModelsSnapshot snapshot, TimeSpan attemptTimeout, ServedPriorCounters counters,
        Action<string>? log, CancellationToken cancel)
    {
        this.routers = routers;
        this.strategy = strategy;
        this.attemptTimeout = attemptTimeout;
        this.counters = counters;
        this.log = log;
        this.cancel = cancel;
        degradedClassCount = ServedModels.DegradedClassCount(snapshot.Experts);
        Shape = ServedModels.ImageShape(snapshot.Experts[0]);
        ClassCount = ServedModels.Classes(snapshot.Experts[0]).Count;
    }

    public (long C, long H, long W) Shape { get; }
    public int ClassCount { get; }

    /// <summary>Waits (until cancelled) for the registry to know published experts and a router, then queries routers.</summary>
    public static ServedPrior Connect(IActorRef registry, IActorRef routers, ServingSettings settings, string strategy, ServedPriorCounters counters,
        Action<string>? log, CancellationToken cancel)
    {
        while (true)
        {
            var snapshot = registry.Ask<PublishedModelsSnapshot>(GetPublishedModels.Instance, TimeSpan.FromSeconds(10),
                cancel).GetAwaiter().GetResult();
            if (snapshot.Experts.Count > 0 && snapshot.Router is not null)
                return new ServedPrior(routers, strategy, snapshot, settings.ExpertDeadline * 2 + TimeSpan.FromSeconds(1), counters, log, cancel);
            var router = snapshot.Router is null ? "no" : "a";
            log?.Invoke($"{snapshot.Store} has {snapshot.Experts.Count} published experts and {router} router; waiting");
            Task.Delay(TimeSpan.FromSeconds(1), cancel).GetAwaiter().GetResult();
        }
    }

    public long? DegradedLabel(long c) => degradedClassCount is { } d ? Diffusion.Modules.UNet.DegradedLabel(d, c) : null;

    public VelocityField Field(double guidance = 1) => (x, t, classes, _) => Query(x, t, classes, guidance);

    private Tensor Query(Tensor x, double t, Tensor classes, double guidance)
    {
        var n = (int)x.shape[0];
        var query = new ScoreQuery("s" + Guid.NewGuid().ToString("N"), ServingSettings.DefaultEnsemble, Enumerable.Repeat((float)t, n).ToArray(),
            classes.to_type(ScalarType.Int64).cpu().data<long>().ToArray(), Enumerable.Repeat((float)guidance, n).ToArray(), strategy, null)
        {
            Payload = GuidedVelocity.ToBytes(x),
        };
        while (true)
        {
            string why;
            try
            {
                // Not the job's token: the step in progress completes, and the training loop commits it at its next check.
                switch (routers.Ask<object>(query, attemptTimeout, CancellationToken.None).GetAwaiter().GetResult())
                {
                    case ScoreAnswer answer:
                        if (answer.LeftOutExperts.Length > 0) counters.Degraded(n);
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
            // Cancelled while the cluster does not answer: the step cannot complete; the run resumes from its checkpoint.
            cancel.ThrowIfCancellationRequested();
            counters.Retried();
            log?.Invoke($"score query {query.Id}: {why}; sending it again");
            Thread.Sleep(RetryDelay);
        }
    }

    public void Dispose() { }
}
