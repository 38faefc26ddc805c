using static TorchSharp.torch;

namespace Islands.Diffusion.Metrics;

/// <summary>
/// The two failure signs of score distillation the bridge paper names, measured on images in [-1, 1]: over-saturation
/// (the share of values within 2 % of the range's limits) and over-smoothing (the variance of the Laplacian; smooth
/// images have little). Compare them with real images of the same class.
/// </summary>
public static class ImageStatistics
{
    public static double Saturation(Tensor images)
    {
        using var scope = NewDisposeScope();
        return (images.abs() >= 0.96).to_type(ScalarType.Float64).mean().item<double>();
    }

    public static double LaplacianVariance(Tensor images)
    {
        using var scope = NewDisposeScope();
        var x = images.to_type(ScalarType.Float32);
        var c = x.shape[1];
        var kernel = tensor(new float[] { 0, 1, 0, 1, -4, 1, 0, 1, 0 }).view(1, 1, 3, 3).repeat(c, 1, 1, 1);
        return nn.functional.conv2d(x, kernel, groups: c).to_type(ScalarType.Float64).var().item<double>();
    }
}
