using Islands.Diffusion.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace Islands.Diffusion.Distillation;

/// <summary>
/// SDEdit, the baseline a translation is compared with: noise the input to t = strength on the path, then integrate the
/// guided flow of the target class back to t = 0 (Euler). Higher strength: more of the target, less of the input.
/// </summary>
public static class Sdedit
{
    /// <param name="field">The ensemble's guided field.</param>
    public static Tensor Run(VelocityField field, Tensor images, long target, double strength, int steps, int seed)
    {
        if (strength is <= 0 or > 1) throw new ConfigException("strength", $"{strength} must lie in (0, 1]");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var generator = new Generator((ulong)seed + 202);
        var x = (1 - strength) * images + strength * randn(images.shape, generator: generator);
        var classes = full(images.shape[0], target, dtype: ScalarType.Int64);
        var dt = strength / steps;
        for (var i = 0; i < steps; i++)
        {
            var t = strength - i * dt;
            x = FlowStep.Predict(x, field(x, t, classes, 0), dt);
        }
        return x.clamp(-1, 1).MoveToOuterDisposeScope();
    }
}
