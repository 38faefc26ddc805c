using Islands.Diffusion.Modules;
using Islands.Diffusion.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace Islands.Diffusion.Routing;

/// <summary>
/// Decentralized Diffusion Models' sampler: at every step one router pass for the whole batch gives p(k | x_t, t, c),
/// the strategy turns it into sparse weights, and each selected expert runs once on just the rows routed to it.
/// The velocity is sum_k w_k · v_k. Experts may differ in architecture. Unavailable experts (the mask) never get work:
/// every strategy renormalises over the rest. Guidance routes with the conditional input and runs both branches on
/// the chosen experts. Classes use -1 for "unconditional"; each model gets its own null class. The step itself is
/// <see cref="RoutedStep"/>'s, which serving shares.
/// </summary>
public sealed class ExpertEnsemble
{
    private readonly IReadOnlyList<IVelocityModel> experts;
    private readonly IRouter router;
    private readonly bool[] available;
    private readonly long[] expertRows;
    private long routerRows;

    public RoutingStrategy Strategy { get; }
    public RoutingTrace? Trace { get; }
    public int ExpertCount => experts.Count;

    /// <summary>Rows each expert has evaluated so far (guidance counts twice).</summary>
    public IReadOnlyList<long> ExpertRowEvaluations => expertRows;
    public long RouterRowEvaluations => routerRows;

    public ExpertEnsemble(IReadOnlyList<IVelocityModel> experts, IRouter router, RoutingStrategy strategy, IReadOnlyList<bool>? available = null,
        RoutingTrace? trace = null, long seed = 0)
    {
        if (experts.Count == 0) throw new ConfigException("experts", "an ensemble needs at least one expert");
        if (router.ExpertCount != experts.Count)
            throw new ConfigException("router", $"the router knows {router.ExpertCount} experts but {experts.Count} were given");
        this.experts = experts;
        this.router = router;
        Strategy = strategy;
        this.available = available?.ToArray() ?? Enumerable.Repeat(true, experts.Count).ToArray();
        if (this.available.Length != experts.Count) throw new ConfigException("available",
            $"mask has {this.available.Length} entries for {experts.Count} experts");
        if (!this.available.Any(a => a)) throw new ConfigException("available", "every expert is marked unavailable");
        if (strategy.Kind == "oracle" && strategy.OracleExpert >= experts.Count)
            throw new ConfigException("strategy", $"oracle:{strategy.OracleExpert} is outside the {experts.Count} experts");
        expertRows = new long[experts.Count];
        Trace = trace;
        sampleGenerator = new Generator((ulong)(seed + 0x5EED));
    }

    private readonly Generator sampleGenerator;

    /// <summary>
    /// The experts' class count when they learned the degraded condition: a row labelled "degraded, class c"
    /// (ClassCount + 1 + c) is routed as the router's own degraded class c, or as class c by a router that did not learn it.
    /// </summary>
    public int? DegradedClassCount { get; init; }

    private Tensor RouterClasses(Tensor classes) => RoutedStep.RouterClasses(classes, DegradedClassCount, router);

    /// <summary>Per-row oracle partitions (for evaluation); overrides the strategy's single oracle expert.</summary>
    public long[]? OracleAssignments { get; init; }

    /// <summary>The ensemble's velocity field with guidance scale cfg for every conditional row.</summary>
    public VelocityField Field(double cfg) => (x, t, classes, offset) => Velocity(x, t, classes, cfg, offset);

    /// <summary>One routed step's velocity at time t; classes -1 are unconditional rows.</summary>
    public Tensor Velocity(Tensor x, double t, Tensor classes, double cfg, int rowOffset = 0)
    {
        using var scope = NewDisposeScope();
        var weights = Weights(x, t, classes, rowOffset);
        var times = FlowSampler.TimeColumn(x, t);
        var scales = full(x.shape[0], cfg, dtype: times.dtype, device: x.device);
        var guided = cfg != 1.0 ? (classes >= 0).sum().item<long>() : 0;
        var answers = new List<ExpertAnswer>();
        foreach (var part in RoutedStep.Split(weights))
        {
            if (!available[part.Expert]) throw new InvalidOperationException($"routing selected unavailable expert {part.Expert}");
            var rows = tensor(part.Rows, device: x.device);
            var v = GuidedVelocity.Evaluate(experts[part.Expert], x.index_select(0, rows), times.index_select(0, rows), classes.index_select(0, rows),
                scales.index_select(0, rows));
            answers.Add(new ExpertAnswer(part.Expert, part.Rows, v));
            expertRows[part.Expert] += part.Rows.Length + (guided > 0 ? (classes.index_select(0, rows) >= 0).sum().item<long>() : 0);
        }
        routerRows += x.shape[0];
        var (velocity, _) = RoutedStep.Combine(weights, answers, x.shape, x.dtype);
        return velocity.MoveToOuterDisposeScope();
    }

    /// <summary>The sparse, renormalised weights [B, K] that the strategy assigns at time t.</summary>
    public Tensor Weights(Tensor x, double t, Tensor classes, int rowOffset = 0)
    {
        using var scope = NewDisposeScope();
        var n = x.shape[0];
        var k = experts.Count;
        var mask = RoutedStep.Mask(available, x.device);
        Tensor p;
        if (Strategy.Kind == "oracle" && OracleAssignments is null && available[Strategy.OracleExpert])
        {
            p = nn.functional.one_hot(full(n, (long)Strategy.OracleExpert, dtype: ScalarType.Int64, device: x.device), k).to_type(ScalarType.Float64);
        }
        else if (Strategy.Kind == "oracle" && OracleAssignments is not null)
        {
            var assigned = tensor(OracleAssignments[rowOffset..(rowOffset + (int)n)], device: x.device);
            p = nn.functional.one_hot(assigned, k).to_type(ScalarType.Float64) * mask;
            var orphaned = p.sum(1, keepdim: true) == 0;
            if (orphaned.any().item<bool>())
                p = where(orphaned, RoutedStep.Posterior(router, x, FlowSampler.TimeColumn(x, t), RouterClasses(classes), mask), p);
        }
        else
        {
            p = RoutedStep.Posterior(router, x, FlowSampler.TimeColumn(x, t), RouterClasses(classes), mask);
        }
        var w = RoutedStep.Weights(p, mask, Strategy, available.Count(a => a), sampleGenerator);
        if (Trace is not null)
        {
            var flat = w.cpu().contiguous().data<double>().ToArray();
            Trace.Record(t, rowOffset, Enumerable.Range(0, (int)n).Select(i => flat.AsSpan(i * k, k).ToArray()).ToArray());
        }
        return w.MoveToOuterDisposeScope();
    }
}
