using Islands.Diffusion.Sampling;
using static TorchSharp.torch;

namespace Islands.Diffusion.Distillation;

/// <summary>
/// The update direction of score distillation (McAllister et al., NeurIPS 2024, read as a one-step bridge between a
/// source and a target distribution) for a velocity prior on the path x_t = (1−t)·x0 + t·ε, where the predicted noise is
/// ε̂ = x_t + (1−t)·v̂. The target is the class condition guided against a negative condition,
/// ε̂_target = ε̂_neg + g·(ε̂_c − ε̂_neg); the direction is ε̂_target − source. Plain SDS takes the unconditional
/// prediction as the negative and the injected noise ε as the source; NFSD, the bridge's calibrated stage and
/// translation take a source condition as both, which leaves g·(ε̂_c − ε̂_src). Either way one step costs one batch of
/// two rows per image (the condition and the negative), as guided sampling does.
/// </summary>
public static class ScoreDistillation
{
    /// <summary>ε̂ = x_t + (1−t)·v̂: the noise a velocity prediction implies.</summary>
    public static Tensor Epsilon(Tensor xt, Tensor velocity, double t) => xt + (1 - t) * velocity;

    /// <param name="prior">An unguided velocity field (guidance scale 1); class -1 is unconditional.</param>
    /// <param name="x">[B, C, H, W] the current images.</param>
    /// <param name="eps">[B, C, H, W] the noise drawn for this step.</param>
    /// <param name="target">[B] int64 the wanted classes.</param>
    /// <param name="negative">[B] int64 the negative (source) condition; -1 is unconditional.</param>
    /// <param name="noiseSource">Plain SDS: the source is the injected noise ε rather than the negative's prediction.</param>
    public static Tensor Direction(VelocityField prior, Tensor x, Tensor eps, double t, Tensor target, Tensor negative, double guidance,
        bool noiseSource)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var n = x.shape[0];
        var xt = (1 - t) * x.detach() + t * eps;
        var v = prior(cat([xt, xt], 0), t, cat([target, negative], 0), 0);
        var conditional = Epsilon(xt, v[..(int)n], t);
        var negativeEps = Epsilon(xt, v[(int)n..], t);
        var guided = negativeEps + guidance * (conditional - negativeEps);
        return (noiseSource ? guided - eps : guided - negativeEps).MoveToOuterDisposeScope();
    }
}
