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
/// the chosen experts. Classes use -1 for "unconditional"; each model gets its own null class.
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
        if (experts.Count == 0) throw new ConfigException("--model", "an ensemble needs at least one expert");
        if (router.ExpertCount != experts.Count)
            throw new ConfigException("--router", $"the router knows {router.ExpertCount} experts but {experts.Count} were given");
        this.experts = experts;
        this.router = router;
        Strategy = strategy;
        this.available = available?.ToArray() ?? Enumerable.Repeat(true, experts.Count).ToArray();
        if (this.available.Length != experts.Count) throw new ConfigException("available", $"mask has {this.available.Length} entries for {experts.Count} experts");
        if (!this.available.Any(a => a)) throw new ConfigException("available", "every expert is marked unavailable");
        if (strategy.Kind == "oracle" && strategy.OracleExpert >= experts.Count)
            throw new ConfigException("--strategy", $"oracle:{strategy.OracleExpert} is outside the {experts.Count} experts");
        expertRows = new long[experts.Count];
        Trace = trace;
        sampleGenerator = new Generator((ulong)(seed + 0x5EED));
    }

    private readonly Generator sampleGenerator;

    /// <summary>Per-row oracle partitions (for evaluation); overrides the strategy's single oracle expert.</summary>
    public long[]? OracleAssignments { get; init; }

    public VelocityField Field(bool conditional, double cfg) => (x, t, classes, offset) => Velocity(x, t, classes, conditional, cfg, offset);

    public Tensor Velocity(Tensor x, double t, Tensor classes, bool conditional, double cfg, int rowOffset = 0)
    {
        using var scope = NewDisposeScope();
        var n = x.shape[0];
        var weights = Weights(x, t, classes, rowOffset);
        var output = zeros_like(x);
        var columns = weights.t().contiguous();
        for (var k = 0; k < experts.Count; k++)
        {
            var column = columns[k];
            var rows = column.nonzero().squeeze(1);
            var count = rows.shape[0];
            if (count == 0) continue;
            if (!available[k]) throw new InvalidOperationException($"routing selected unavailable expert {k}");
            var expert = experts[k];
            var xs = x.index_select(0, rows);
            var cs = classes.index_select(0, rows);
            cs = where(cs < 0, full_like(cs, expert.NullClass), cs);
            var v = FlowSampler.Velocity(expert, xs, t, cs, conditional, cfg);
            var w = column.index_select(0, rows).to_type(x.dtype).view([count, .. Enumerable.Repeat(1L, (int)x.dim() - 1)]);
            output.index_add_(0, rows, v.to_type(x.dtype) * w, 1);
            expertRows[k] += count * (conditional && cfg != 1.0 ? 2 : 1);
        }
        routerRows += n;
        return output.MoveToOuterDisposeScope();
    }

    /// <summary>The sparse, renormalised weights [B, K] that the strategy assigns at time t.</summary>
    public Tensor Weights(Tensor x, double t, Tensor classes, int rowOffset = 0)
    {
        using var scope = NewDisposeScope();
        var n = x.shape[0];
        var k = experts.Count;
        var mask = tensor(available.Select(a => a ? 1.0 : 0.0).ToArray(), dtype: ScalarType.Float64, device: x.device).unsqueeze(0);
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
            if (orphaned.any().item<bool>()) p = where(orphaned, RouterProbabilities(x, t, classes) * mask, p);
        }
        else
        {
            p = RouterProbabilities(x, t, classes) * mask;
        }
        var w = RoutingWeights.Apply(p, mask, Strategy, available.Count(a => a), sampleGenerator);
        if (Trace is not null)
        {
            var flat = w.cpu().contiguous().data<double>().ToArray();
            Trace.Record(t, rowOffset, Enumerable.Range(0, (int)n).Select(i => flat.AsSpan(i * k, k).ToArray()).ToArray());
        }
        return w.MoveToOuterDisposeScope();
    }

    private Tensor RouterProbabilities(Tensor x, double t, Tensor classes)
    {
        var tt = FlowSampler.TimeColumn(x, t);
        var routerNull = router is RouterNet net ? net.NullClass : 0;
        var rc = where(classes < 0, full_like(classes, routerNull), classes);
        return router.Posterior(x, tt, rc).to_type(ScalarType.Float64);
    }
}
