using static TorchSharp.torch;

namespace Islands.Diffusion.Training;

/// <summary>
/// The corruptions a "degraded" condition learns (the calibrated source of score distillation as a bridge, in place of
/// the paper's source prompt "oversaturated, smooth, pixelated, noisy, ..."): blur, over-saturation, pixelation, noise
/// and contrast loss, each applied to an image with probability 0.4 (blur when none was drawn), so the condition covers
/// their mixtures. Images are in [-1, 1]; every draw comes from the step's generator.
/// </summary>
public static class Degradations
{
    public const double Probability = 0.4;

    /// <summary>
    /// A <paramref name="fraction"/> of the rows become degraded copies labelled "degraded, class c" (label
    /// classCount + 1 + c, from <paramref name="labels"/>: never the null class a row may have been dropped to); the
    /// others keep their image and <paramref name="classes"/>. Experts and router mix their batches the same way.
    /// </summary>
    public static (Tensor X0, Tensor Classes) Mix(Tensor x0, Tensor labels, Tensor classes, double fraction, int classCount, Generator generator)
    {
        using var scope = NewDisposeScope();
        var rows = rand(x0.shape[0], generator: generator, device: x0.device) < fraction;
        var degraded = Apply(x0, generator);
        return (Where(rows, degraded, x0).MoveToOuterDisposeScope(),
            where(rows, Modules.UNet.DegradedLabel(classCount, 0) + labels, classes).MoveToOuterDisposeScope());
    }

    public static Tensor Apply(Tensor x0, Generator generator)
    {
        using var scope = NewDisposeScope();
        var n = x0.shape[0];
        var device = x0.device;
        var picks = rand([5, n], generator: generator, device: device) < Probability;
        var none = picks.any(0).logical_not();
        picks[0] = picks[0].logical_or(none);
        var noise = randn(x0.shape, generator: generator, device: device);
        var strength = rand([n], generator: generator, device: device).view(-1, 1, 1, 1);
        var x = x0;
        x = Where(picks[0], Blur(x), x);
        x = Where(picks[1], (x * (1.8 + 1.7 * strength)).clamp(-1, 1), x);
        x = Where(picks[2], Pixelate(x), x);
        x = Where(picks[3], (x + (0.15 + 0.3 * strength) * noise).clamp(-1, 1), x);
        x = Where(picks[4], x * (0.25 + 0.35 * strength), x);
        return x.MoveToOuterDisposeScope();
    }

    private static Tensor Where(Tensor rows, Tensor degraded, Tensor x) => where(rows.view(-1, 1, 1, 1), degraded, x);

    private static Tensor Blur(Tensor x)
    {
        var once = nn.functional.avg_pool2d(x, 3, stride: 1, padding: 1, count_include_pad: false);
        return nn.functional.avg_pool2d(once, 3, stride: 1, padding: 1, count_include_pad: false);
    }

    private static Tensor Pixelate(Tensor x)
    {
        var (h, w) = (x.shape[2], x.shape[3]);
        var small = nn.functional.adaptive_avg_pool2d(x, [Math.Max(1, h / 4), Math.Max(1, w / 4)]);
        return nn.functional.interpolate(small, [h, w], mode: InterpolationMode.Nearest);
    }
}
