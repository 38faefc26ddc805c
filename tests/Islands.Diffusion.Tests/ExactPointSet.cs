using Islands.Diffusion.Modules;
using Islands.Diffusion.Routing;
using static TorchSharp.torch;

namespace Islands.Diffusion.Tests;

/// <summary>
/// Closed forms for data that is a finite point set under the path x_t = (1-t)·x0 + t·eps:
/// p(x_t | x0 = x_i) = N((1-t)·x_i, t²·I), the conditional velocity is (x - x_i)/t, and the marginal velocity of a set S
/// is the posterior-weighted mean of those over S. Everything runs in float64.
/// </summary>
public sealed class ExactPointSet
{
    public Tensor Points { get; }           // [N, D]
    public long[] Clusters { get; }         // cluster of each point

    public ExactPointSet(Tensor points, long[] clusters)
    {
        Points = points.to_type(ScalarType.Float64);
        Clusters = clusters;
    }

    public int K => (int)Clusters.Max() + 1;

    /// <summary>log p(x_t | x_i) up to a constant shared by all i: [B, N].</summary>
    public Tensor LogKernel(Tensor x, Tensor t)
    {
        var flat = x.flatten(1).to_type(ScalarType.Float64);
        var tt = t.to_type(ScalarType.Float64).view(-1, 1);
        var means = Points.unsqueeze(0) * (1 - tt).unsqueeze(2);               // [B, N, D]
        return -(flat.unsqueeze(1) - means).pow(2).sum(2) / (2 * tt.pow(2));   // [B, N]
    }

    public Tensor MarginalVelocity(Tensor x, Tensor t, IReadOnlyCollection<long>? cluster = null)
    {
        var flat = x.flatten(1).to_type(ScalarType.Float64);
        var logits = LogKernel(x, t);
        if (cluster is not null)
        {
            var keep = tensor(Clusters.Select(c => cluster.Contains(c)).ToArray()).unsqueeze(0);
            logits = where(keep, logits, full_like(logits, double.NegativeInfinity));
        }
        var w = nn.functional.softmax(logits, 1);                                    // [B, N]
        var tt = t.to_type(ScalarType.Float64).view(-1, 1);
        var velocity = (flat - w.matmul(Points)) / tt;                               // sum_i w_i (x - x_i)/t
        return velocity.view(x.shape);
    }

    public Tensor Posterior(Tensor x, Tensor t)
    {
        var p = nn.functional.softmax(LogKernel(x, t), 1);                           // equal priors 1/N per point
        var onehot = nn.functional.one_hot(tensor(Clusters), K).to_type(ScalarType.Float64);
        return p.matmul(onehot);                                                     // [B, K]
    }
}

/// <summary>The exact flow-matching expert of one cluster: what a perfect expert trained on that cluster alone learns.</summary>
public sealed class ExactClusterExpert(ExactPointSet set, long cluster) : IVelocityModel
{
    public int Calls { get; private set; }
    public long Rows { get; private set; }
    public long NullClass => 0;

    public Tensor Velocity(Tensor x, Tensor t, Tensor classes)
    {
        Calls++;
        Rows += x.shape[0];
        return set.MarginalVelocity(x, t, [cluster]);
    }
}

public sealed class ExactPosteriorRouter(ExactPointSet set) : IRouter
{
    public int ExpertCount => set.K;
    public long NullClass => 0;
    public Tensor Posterior(Tensor x, Tensor t, Tensor classes) => set.Posterior(x, t);
}

/// <summary>A router that always names a fixed partition per row (by the row's first coordinate's sign here).</summary>
public sealed class FixedRouter(Func<Tensor, Tensor> assign, int k) : IRouter
{
    public int ExpertCount => k;
    public long NullClass => 0;
    public Tensor Posterior(Tensor x, Tensor t, Tensor classes) => nn.functional.one_hot(assign(x), k).to_type(ScalarType.Float64);
}
