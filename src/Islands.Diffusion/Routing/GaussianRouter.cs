using Islands.Diffusion.Data;
using Islands.Diffusion.Partitioning;
using static TorchSharp.torch;

namespace Islands.Diffusion.Routing;

/// <summary>
/// Training-free router: each partition is a diagonal Gaussian N(mu_k, diag(s_k^2)) in pixel space, pushed through
/// the noise path, x_t | k ~ N((1-t)·mu_k, (1-t)^2·diag(s_k^2) + t^2·I), and weighted by the partition's share of the
/// data. Exact for Gaussian clusters; a baseline (and a router that works before a learned one exists) for images.
/// </summary>
public sealed class GaussianRouter : IRouter, IDisposable
{
    private readonly Tensor means;      // [K, D]
    private readonly Tensor variances;  // [K, D]
    private readonly Tensor logPriors;  // [K]

    public int ExpertCount { get; }

    public GaussianRouter(Tensor means, Tensor variances, Tensor priors)
    {
        ExpertCount = (int)means.shape[0];
        this.means = means.to_type(ScalarType.Float64).DetachFromDisposeScope();
        this.variances = variances.to_type(ScalarType.Float64).clamp_min(1e-4).DetachFromDisposeScope();
        logPriors = priors.to_type(ScalarType.Float64).log().DetachFromDisposeScope();
    }

    public static GaussianRouter Fit(LabeledImages train, PartitionFile partitions)
    {
        if (partitions.Assignments.Length != train.Count)
            throw new ConfigException("--partitions", $"assigns {partitions.Assignments.Length} images but the dataset has {train.Count}");
        using var scope = NewDisposeScope();
        var x = ImageTensors.ToTensor(train).flatten(1).to_type(ScalarType.Float64);
        var assign = tensor(partitions.Assignments.Select(a => (long)a).ToArray());
        var k = partitions.K;
        var counts = bincount(assign, minlength: k).to_type(ScalarType.Float64);
        var sums = zeros(k, x.shape[1], dtype: ScalarType.Float64).index_add(0, assign, x, 1);
        var mu = sums / counts.clamp_min(1).unsqueeze(1);
        var squares = zeros(k, x.shape[1], dtype: ScalarType.Float64).index_add(0, assign, x * x, 1);
        var variance = squares / counts.clamp_min(1).unsqueeze(1) - mu * mu;
        var router = new GaussianRouter(mu, variance, counts / counts.sum());
        return router;
    }

    public Tensor Posterior(Tensor x, Tensor t, Tensor classes)
    {
        using var scope = NewDisposeScope();
        var flat = x.flatten(1).to_type(ScalarType.Float64).unsqueeze(1);                 // [B, 1, D]
        var tt = t.to_type(ScalarType.Float64).view(-1, 1, 1);                                  // [B, 1, 1]
        var mean = (1 - tt) * means.unsqueeze(0);                                               // [B, K, D]
        var variance = (1 - tt).pow(2) * variances.unsqueeze(0) + tt.pow(2);                   // [B, K, D]
        var logLikelihood = -0.5 * ((flat - mean).pow(2) / variance + variance.log()).sum(2); // [B, K]
        return nn.functional.softmax(logLikelihood + logPriors.unsqueeze(0), 1).to_type(x.dtype).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        means.Dispose();
        variances.Dispose();
        logPriors.Dispose();
    }
}
