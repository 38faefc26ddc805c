using static TorchSharp.torch;

namespace Islands.Diffusion.Routing;

/// <summary>The rows of a batch that one expert evaluates (indices into the batch, ascending).</summary>
public sealed record ExpertRows(int Expert, long[] Rows);

/// <summary>One expert's velocities for its rows of the batch, in the order of <see cref="ExpertRows.Rows"/>.</summary>
public sealed record ExpertAnswer(int Expert, long[] Rows, Tensor Velocity);

/// <summary>
/// The routed step of Decentralized Diffusion Models, on tensors, shared by offline sampling and serving: plan (one
/// router pass for the whole batch, the strategy's sparse weights, the rows of each selected expert), the experts'
/// answers, combine (Σ_k w_k·v_k over the experts that answered, renormalised by their weight). Offline every expert
/// answers and the weights already sum to 1; serving may combine a step in parts, or without an expert that missed
/// its deadline, and the renormalisation then follows the method (never a guess for the missing one).
/// </summary>
public static class RoutedStep
{
    /// <summary>The router's p(k | x_t, t, c) as float64, masked to the available experts; class -1 is the router's null class.</summary>
    /// <param name="mask">[1, K] of 1 (available) and 0, float64.</param>
    public static Tensor Posterior(IRouter router, Tensor x, Tensor t, Tensor classes, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var routerClasses = where(classes < 0, full_like(classes, router.NullClass), classes);
        return (router.Posterior(x, t, routerClasses).to_type(ScalarType.Float64) * mask).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The classes the router is asked about: with experts that learned the degraded condition (degradedClassCount set),
    /// "degraded, class c" (count + 1 + c) goes to a router that learned it as it is, and to one that did not as class c
    /// (a degraded copy of an image belongs to the image's partition).
    /// </summary>
    public static Tensor RouterClasses(Tensor classes, int? degradedClassCount, IRouter router) => degradedClassCount is { } c
        ? where(classes > c, classes - (c + 1) + (router.LearnedDegradedCondition ? router.NullClass + 1 : 0), classes)
        : classes;

    /// <summary>[1, K] float64 mask of the available experts.</summary>
    public static Tensor Mask(IReadOnlyList<bool> available, Device? device = null) =>
        tensor(available.Select(a => a ? 1.0 : 0.0).ToArray(), dtype: ScalarType.Float64, device: device ?? CPU).unsqueeze(0);

    /// <summary>The rows each expert with a positive weight must evaluate.</summary>
    /// <param name="weights">[B, K] weights.</param>
    public static IReadOnlyList<ExpertRows> Split(Tensor weights)
    {
        var n = (int)weights.shape[0];
        var k = (int)weights.shape[1];
        var flat = weights.cpu().to_type(ScalarType.Float64).contiguous().data<double>().ToArray();
        return Split(flat, n, k);
    }

    /// <inheritdoc cref="Split(Tensor)"/>
    public static IReadOnlyList<ExpertRows> Split(double[] weights, int rows, int experts)
    {
        var work = new List<ExpertRows>();
        for (var e = 0; e < experts; e++)
        {
            var selected = new List<long>();
            for (var r = 0; r < rows; r++)
                if (weights[r * experts + e] > 0) selected.Add(r);
            if (selected.Count > 0) work.Add(new ExpertRows(e, [.. selected]));
        }
        return work;
    }

    /// <summary>
    /// Σ_k w_k·v_k / Σ_k w_k over the experts that answered, per row, computed in dtype (the state's); rows that no
    /// answering expert covers are zero (their weight sum, also returned, is 0).
    /// </summary>
    /// <param name="weights">[B, K] float64 routing weights.</param>
    public static (Tensor Velocity, Tensor WeightSum) Combine(Tensor weights, IReadOnlyList<ExpertAnswer> answers, long[] shape, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var n = weights.shape[0];
        var output = zeros([n, .. shape[1..]], dtype: dtype, device: weights.device);
        var weightSum = zeros(n, dtype: ScalarType.Float64, device: weights.device);
        foreach (var answer in answers)
        {
            var rows = tensor(answer.Rows, device: weights.device);
            var w = weights.select(1, answer.Expert).index_select(0, rows);
            var broadcast = w.to_type(dtype).view([answer.Rows.Length, .. Enumerable.Repeat(1L, shape.Length - 1)]);
            output.index_add_(0, rows, answer.Velocity.to_type(dtype) * broadcast, 1);
            weightSum.index_add_(0, rows, w, 1);
        }
        var divisor = where(weightSum > 0, weightSum, ones_like(weightSum)).to_type(dtype).view([n, .. Enumerable.Repeat(1L, shape.Length - 1)]);
        return ((output / divisor).MoveToOuterDisposeScope(), weightSum.MoveToOuterDisposeScope());
    }

    /// <summary>
    /// The sparse, renormalised expert weights a strategy assigns to posteriors: one function for the offline ensemble and
    /// serving, so that a served top-1 step picks exactly the experts an offline one would.
    /// </summary>
    /// <param name="posterior">[B, K] probabilities, already masked to the available experts (rows may sum to 0).</param>
    /// <param name="mask">[1, K] of 1 (available) and 0.</param>
    public static Tensor Weights(Tensor posterior, Tensor mask, RoutingStrategy strategy, int availableCount, Generator? generator = null)
    {
        using var scope = NewDisposeScope();
        var n = posterior.shape[0];
        var k = posterior.shape[1];
        var total = posterior.sum(1, keepdim: true);
        // A router that gives all its mass to unavailable experts: fall back to uniform over the available ones.
        var p = where(total > 0, posterior / total.clamp_min(1e-300), mask.expand(n, k) / mask.sum());
        Tensor w = strategy.Kind switch
        {
            "full" or "oracle" => p,
            "topk" => KeepTop(p, Math.Min(strategy.TopK, availableCount)),
            "threshold" => Renormalise(where((p >= strategy.Threshold).logical_or(OneHotArgmax(p).to_type(ScalarType.Bool)), p, zeros_like(p))),
            "sample" => nn.functional.one_hot(p.multinomial(1, generator: generator).squeeze(1), k).to_type(ScalarType.Float64),
            _ => throw new ConfigException("strategy", $"unknown strategy {strategy}"),
        };
        return (w * mask).MoveToOuterDisposeScope();
    }

    private static Tensor KeepTop(Tensor p, int count)
    {
        var (_, indices) = p.topk(count, dim: 1);
        var keep = zeros_like(p).scatter(1, indices, ones_like(indices, dtype: ScalarType.Float64));
        return Renormalise(p * keep);
    }

    private static Tensor OneHotArgmax(Tensor p) => nn.functional.one_hot(p.argmax(1), p.shape[1]);

    private static Tensor Renormalise(Tensor w) => w / w.sum(1, keepdim: true).clamp_min(1e-300);
}
