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

    /// <summary>Mean structural similarity of image pairs in [-1, 1] (7 × 7 windows, the usual constants), per image then averaged.</summary>
    public static double Ssim(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        var x = (a.to_type(ScalarType.Float64) + 1) / 2;
        var y = (b.to_type(ScalarType.Float64) + 1) / 2;
        Tensor Pool(Tensor v) => nn.functional.avg_pool2d(v, 7, stride: 1);
        var (mx, my) = (Pool(x), Pool(y));
        var vx = Pool(x * x) - mx * mx;
        var vy = Pool(y * y) - my * my;
        var cov = Pool(x * y) - mx * my;
        const double c1 = 0.01 * 0.01, c2 = 0.03 * 0.03;
        var map = (2 * mx * my + c1) * (2 * cov + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2));
        return map.mean().item<double>();
    }

    /// <summary>Root mean squared difference of image pairs in [-1, 1].</summary>
    public static double Rmse(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        return (a.to_type(ScalarType.Float64) - b.to_type(ScalarType.Float64)).pow(2).mean().sqrt().item<double>();
    }
}
