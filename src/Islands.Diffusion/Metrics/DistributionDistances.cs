using static TorchSharp.torch;

namespace Islands.Diffusion.Metrics;

/// <summary>Fréchet distance and kernel (polynomial MMD) distance between two feature sets, in float64.</summary>
public static class DistributionDistances
{
    public sealed record Gaussian(double[] Mean, double[] Covariance, int Dim, int Count);

    public static Gaussian Fit(Tensor features)
    {
        using var scope = NewDisposeScope();
        var f = features.to_type(ScalarType.Float64);
        var mu = f.mean([0]);
        var centred = f - mu;
        var cov = centred.t().matmul(centred) / Math.Max(1, f.shape[0] - 1);
        return new Gaussian(mu.data<double>().ToArray(), cov.contiguous().data<double>().ToArray(), (int)f.shape[1], (int)f.shape[0]);
    }

    /// <summary>||mu1-mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), with the trace of the root taken from the symmetric
    /// form sqrt(S1) S2 sqrt(S1), whose eigenvalues are real and non-negative.</summary>
    public static double Frechet(Gaussian a, Gaussian b)
    {
        using var scope = NewDisposeScope();
        var mu1 = tensor(a.Mean);
        var mu2 = tensor(b.Mean);
        var s1 = tensor(a.Covariance).reshape(a.Dim, a.Dim);
        var s2 = tensor(b.Covariance).reshape(b.Dim, b.Dim);
        var root1 = SymmetricSqrt(s1);
        var middle = root1.matmul(s2).matmul(root1);
        middle = (middle + middle.t()) / 2;
        var traceRoot = linalg.eigvalsh(middle).clamp_min(0).sqrt().sum().item<double>();
        var diff = (mu1 - mu2).pow(2).sum().item<double>();
        return Math.Max(0, diff + s1.trace().item<double>() + s2.trace().item<double>() - 2 * traceRoot);
    }

    private static Tensor SymmetricSqrt(Tensor s)
    {
        var (values, vectors) = linalg.eigh((s + s.t()) / 2);
        return vectors.matmul(diag(values.clamp_min(0).sqrt())).matmul(vectors.t());
    }

    /// <summary>Unbiased MMD^2 with the cubic polynomial kernel (x·y/d + 1)^3, averaged over random subsets (KID).</summary>
    public static double Kernel(Tensor x, Tensor y, int subsets = 10, int subsetSize = 1000, long seed = 0)
    {
        using var scope = NewDisposeScope();
        var fx = x.to_type(ScalarType.Float64);
        var fy = y.to_type(ScalarType.Float64);
        var m = (int)Math.Min(subsetSize, Math.Min(fx.shape[0], fy.shape[0]));
        if (m < 2) return double.NaN;
        var d = fx.shape[1];
        using var generator = new Generator((ulong)seed);
        double total = 0;
        for (var s = 0; s < subsets; s++)
        {
            var a = fx.index_select(0, randperm(fx.shape[0], generator: generator)[..m]);
            var b = fy.index_select(0, randperm(fy.shape[0], generator: generator)[..m]);
            var kxx = (a.matmul(a.t()) / d + 1).pow(3);
            var kyy = (b.matmul(b.t()) / d + 1).pow(3);
            var kxy = (a.matmul(b.t()) / d + 1).pow(3);
            var sxx = (kxx.sum() - kxx.diagonal().sum()).item<double>() / (m * (m - 1.0));
            var syy = (kyy.sum() - kyy.diagonal().sum()).item<double>() / (m * (m - 1.0));
            var sxy = kxy.sum().item<double>() / ((double)m * m);
            total += sxx + syy - 2 * sxy;
        }
        return total / subsets;
    }
}
