using TorchSharp;
using static TorchSharp.torch;

namespace Islands.Diffusion.Partitioning;

/// <summary>Lloyd's k-means with k-means++ seeding, deterministic for a seed.</summary>
public static class KMeans
{
    public sealed record Result(float[][] Centroids, int[] Assignments, int[] Counts, int Iterations);

    public static Result Fit(Tensor points, int k, int seed, int maxIterations = 25)
    {
        using var scope = NewDisposeScope();
        var x = points.to_type(ScalarType.Float32).contiguous();
        var n = (int)x.shape[0];
        if (k < 1 || k > n) throw new ConfigException("k", $"{k} clusters cannot be formed from {n} points");
        var generator = new Generator((ulong)seed);
        // k-means++ seeding is sequential in k; for the many fine centroids, distinct random points seed as well in practice.
        var centroids = k <= 64 ? PlusPlusInit(x, k, generator) : x.index_select(0, randperm(n, generator: generator)[..k]).clone();
        Tensor assign = zeros(n, dtype: ScalarType.Int64);
        var iterations = 0;
        for (; iterations < maxIterations; iterations++)
        {
            using var step = NewDisposeScope();
            var next = Nearest(x, centroids);
            var changed = iterations == 0 || !next.eq(assign).all().item<bool>();
            assign = next.MoveToOuterDisposeScope();
            var sums = zeros(k, x.shape[1]).index_add(0, assign, x, 1);
            var counts = bincount(assign, minlength: k).to_type(ScalarType.Float32);
            var nonEmpty = (counts > 0).unsqueeze(1);
            centroids = where(nonEmpty, sums / counts.clamp_min(1).unsqueeze(1), centroids).MoveToOuterDisposeScope();
            if (!changed) break;
        }
        assign = Nearest(x, centroids);
        var countArray = bincount(assign, minlength: k).data<long>().Select(c => (int)c).ToArray();
        return new Result(ToRows(centroids), assign.data<long>().Select(a => (int)a).ToArray(), countArray, iterations);
    }

    /// <summary>Index of the nearest centroid per row, in chunks so the distance matrix never has to exist whole.</summary>
    public static Tensor Nearest(Tensor x, Tensor centroids)
    {
        const long chunk = 8192;
        var parts = new List<Tensor>();
        for (long start = 0; start < x.shape[0]; start += chunk)
        {
            using var scope = NewDisposeScope();
            var length = Math.Min(chunk, x.shape[0] - start);
            // ||x||^2 is the same for every centroid of a row, so it cannot change the argmin.
            parts.Add((centroids.pow(2).sum(1).unsqueeze(0) - 2 * x.narrow(0, start, length).matmul(centroids.t())).argmin(1)
                .MoveToOuterDisposeScope());
        }
        var result = cat(parts, 0);
        foreach (var p in parts) p.Dispose();
        return result;
    }

    public static Tensor SquaredDistances(Tensor x, Tensor centroids)
    {
        using var scope = NewDisposeScope();
        var d = x.pow(2).sum(1, keepdim: true) - 2 * x.matmul(centroids.t()) + centroids.pow(2).sum(1).unsqueeze(0);
        return d.clamp_min(0).MoveToOuterDisposeScope();
    }

    private static Tensor PlusPlusInit(Tensor x, int k, Generator generator)
    {
        var n = x.shape[0];
        var chosen = new long[k];
        chosen[0] = randint(0, n, [1], generator: generator).item<long>();
        var best = SquaredDistances(x, x[chosen[0]].unsqueeze(0)).squeeze(1);
        for (var i = 1; i < k; i++)
        {
            var total = best.sum().item<float>();
            chosen[i] = total > 0
                ? multinomial(best / total, 1, generator: generator).item<long>()
                : randint(0, n, [1], generator: generator).item<long>();
            best = minimum(best, SquaredDistances(x, x[chosen[i]].unsqueeze(0)).squeeze(1));
        }
        return x.index_select(0, tensor(chosen)).clone();
    }

    public static float[][] ToRows(Tensor matrix)
    {
        var rows = (int)matrix.shape[0];
        var cols = (int)matrix.shape[1];
        var flat = matrix.to_type(ScalarType.Float32).contiguous().data<float>().ToArray();
        return Enumerable.Range(0, rows).Select(r => flat.AsSpan(r * cols, cols).ToArray()).ToArray();
    }
}
