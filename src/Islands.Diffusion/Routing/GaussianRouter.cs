using Islands.Diffusion.Data;
using Islands.Diffusion.Partitioning;
using static TorchSharp.torch;

namespace Islands.Diffusion.Routing;

/// <summary>
/// Training-free router: each partition is a diagonal Gaussian N(mu_k, diag(s_k^2)) in pixel space, pushed through
/// the noise path, x_t | k ~ N((1-t)·mu_k, (1-t)^2·diag(s_k^2) + t^2·I), and weighted by the partition's share of the
/// data. Exact for Gaussian clusters; a baseline (and a router that works before a learned one exists) for images.
/// Like the learned router it sees the class: for class c it uses the Gaussians of that class's images in each
/// partition, weighted by p(k | c), so near pure noise it still routes a class to the partitions that hold it. The
/// null class (or no class) uses the class-blind Gaussians.
/// </summary>
public sealed class GaussianRouter : IRouter, IDisposable
{
    private readonly Tensor means;      // [C+1, K, D]; row C is class-blind
    private readonly Tensor variances;  // [C+1, K, D]
    private readonly Tensor logPriors;  // [C+1, K]: log p(k | c)
    private readonly int classCount;

    public int ExpertCount { get; }
    public long NullClass => classCount;

    /// <param name="means">[C+1, K, D] (or [K, D] for a class-blind router); the last row belongs to no class.</param>
    public GaussianRouter(Tensor means, Tensor variances, Tensor priors)
    {
        if (means.dim() == 2)
        {
            means = means.unsqueeze(0);
            variances = variances.unsqueeze(0);
            priors = priors.unsqueeze(0);
        }
        classCount = (int)means.shape[0] - 1;
        ExpertCount = (int)means.shape[1];
        this.means = means.to_type(ScalarType.Float64).DetachFromDisposeScope();
        this.variances = variances.to_type(ScalarType.Float64).clamp_min(1e-4).DetachFromDisposeScope();
        logPriors = priors.to_type(ScalarType.Float64).log().DetachFromDisposeScope();
    }

    public static GaussianRouter Fit(LabeledImages train, PartitionFile partitions)
    {
        if (partitions.Assignments.Length != train.Count)
            throw new ConfigException("partitionsFile", $"assigns {partitions.Assignments.Length} images but the dataset has {train.Count}");
        using var scope = NewDisposeScope();
        var x = ImageTensors.ToTensor(train).flatten(1).to_type(ScalarType.Float64);
        var assign = tensor(partitions.Assignments.Select(a => (long)a).ToArray());
        var labels = ImageTensors.Labels(train);
        var k = partitions.K;
        var classes = (int)labels.max().item<long>() + 1;
        var means = new List<Tensor>();
        var variances = new List<Tensor>();
        var priors = new List<Tensor>();
        for (var c = 0; c <= classes; c++)
        {
            // Row `classes` is fitted on every image: the class-blind router for the null class.
            var rows = c == classes ? x : x.index_select(0, nonzero(labels == c).squeeze(1));
            var rowAssign = c == classes ? assign : assign.index_select(0, nonzero(labels == c).squeeze(1));
            var counts = bincount(rowAssign, minlength: k).to_type(ScalarType.Float64);
            var sums = zeros(k, x.shape[1], dtype: ScalarType.Float64).index_add(0, rowAssign, rows, 1);
            var mu = sums / counts.clamp_min(1).unsqueeze(1);
            var squares = zeros(k, x.shape[1], dtype: ScalarType.Float64).index_add(0, rowAssign, rows * rows, 1);
            means.Add(mu);
            variances.Add(squares / counts.clamp_min(1).unsqueeze(1) - mu * mu);
            priors.Add(counts / counts.sum().clamp_min(1));
        }
        return new GaussianRouter(stack(means), stack(variances), stack(priors));
    }

    public Tensor Posterior(Tensor x, Tensor t, Tensor classes)
    {
        using var scope = NewDisposeScope();
        var row = classes.to_type(ScalarType.Int64).to(x.device);
        row = where((row >= 0) & (row < classCount), row, full_like(row, classCount));
        var flat = x.flatten(1).to_type(ScalarType.Float64).unsqueeze(1);                     // [B, 1, D]
        var tt = t.to_type(ScalarType.Float64).view(-1, 1, 1);                                  // [B, 1, 1]
        var mean = (1 - tt) * means.index_select(0, row);                                       // [B, K, D]
        var variance = (1 - tt).pow(2) * variances.index_select(0, row) + tt.pow(2);           // [B, K, D]
        var logLikelihood = -0.5 * ((flat - mean).pow(2) / variance + variance.log()).sum(2); // [B, K]
        return nn.functional.softmax(logLikelihood + logPriors.index_select(0, row), 1).to_type(x.dtype).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        means.Dispose();
        variances.Dispose();
        logPriors.Dispose();
    }
}
