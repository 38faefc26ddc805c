using static TorchSharp.torch;

namespace Islands.Diffusion.Routing;

/// <summary>
/// Turns router posteriors into the sparse, renormalised expert weights a strategy assigns. Shared by the offline
/// ensemble and by serving, so that a served top-1 step picks exactly the experts an offline one would.
/// </summary>
public static class RoutingWeights
{
    /// <param name="posterior">[B, K] probabilities, already masked to the available experts (rows may sum to 0).</param>
    /// <param name="mask">[1, K] of 1 (available) and 0.</param>
    public static Tensor Apply(Tensor posterior, Tensor mask, RoutingStrategy strategy, int availableCount, Generator? generator = null)
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
