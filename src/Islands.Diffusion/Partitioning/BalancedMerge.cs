namespace Islands.Diffusion.Partitioning;

/// <summary>
/// Merges weighted fine centroids into K coarse clusters whose total weights stay within a capacity
/// (balanced k-means in the spirit of MoDE): k-means++ seeding, then alternating a capacity-constrained greedy
/// assignment (largest regret first) with weighted centroid updates.
/// </summary>
public static class BalancedMerge
{
    public sealed record Result(int[] FineToCoarse, double[][] Centroids, long[] Sizes);

    public static Result Merge(float[][] fine, int[] weights, int k, double tolerance, int seed, int iterations = 30)
    {
        var f = fine.Length;
        if (k < 1 || k > f) throw new ConfigException("k", $"{k} partitions cannot be formed from {f} fine clusters");
        var dim = fine[0].Length;
        long total = weights.Sum(w => (long)w);
        var capacity = (long)Math.Ceiling(total / (double)k * (1 + tolerance));
        var random = new Random(seed);
        var centroids = SeedPlusPlus(fine, weights, k, random);
        var assignment = new int[f];
        for (var iteration = 0; iteration < iterations; iteration++)
        {
            var next = Assign(fine, weights, centroids, capacity);
            var changed = !next.AsSpan().SequenceEqual(assignment) || iteration == 0;
            assignment = next;
            centroids = Update(fine, weights, assignment, k, dim, centroids);
            if (!changed) break;
        }
        var sizes = new long[k];
        for (var i = 0; i < f; i++) sizes[assignment[i]] += weights[i];
        return new Result(assignment, centroids, sizes);
    }

    private static int[] Assign(float[][] fine, int[] weights, double[][] centroids, long capacity)
    {
        var f = fine.Length;
        var k = centroids.Length;
        var distances = new double[f][];
        var regret = new double[f];
        for (var i = 0; i < f; i++)
        {
            distances[i] = centroids.Select(c => SquaredDistance(fine[i], c)).ToArray();
            var sorted = distances[i].Order().ToArray();
            regret[i] = k > 1 ? sorted[1] - sorted[0] : 0;
        }
        var order = Enumerable.Range(0, f).OrderByDescending(i => regret[i]).ThenBy(i => i).ToArray();
        var load = new long[k];
        var result = new int[f];
        foreach (var i in order)
        {
            var choice = -1;
            foreach (var c in Enumerable.Range(0, k).OrderBy(c => distances[i][c]).ThenBy(c => c))
            {
                if (load[c] + weights[i] <= capacity) { choice = c; break; }
            }
            if (choice < 0) choice = Enumerable.Range(0, k).OrderBy(c => load[c]).ThenBy(c => c).First();
            result[i] = choice;
            load[choice] += weights[i];
        }
        return result;
    }

    private static double[][] Update(float[][] fine, int[] weights, int[] assignment, int k, int dim, double[][] previous)
    {
        var sums = new double[k][];
        var mass = new double[k];
        for (var c = 0; c < k; c++) sums[c] = new double[dim];
        for (var i = 0; i < fine.Length; i++)
        {
            var c = assignment[i];
            mass[c] += weights[i];
            for (var d = 0; d < dim; d++) sums[c][d] += weights[i] * (double)fine[i][d];
        }
        for (var c = 0; c < k; c++)
        {
            if (mass[c] == 0) { sums[c] = previous[c]; continue; }
            for (var d = 0; d < dim; d++) sums[c][d] /= mass[c];
        }
        return sums;
    }

    private static double[][] SeedPlusPlus(float[][] fine, int[] weights, int k, Random random)
    {
        var chosen = new List<int> { PickWeighted(fine.Select((_, i) => (double)weights[i]).ToArray(), random) };
        var best = fine.Select(p => SquaredDistance(p, fine[chosen[0]].Select(v => (double)v).ToArray())).ToArray();
        while (chosen.Count < k)
        {
            var next = PickWeighted(best.Select((d, i) => d * weights[i]).ToArray(), random);
            chosen.Add(next);
            var centre = fine[next].Select(v => (double)v).ToArray();
            for (var i = 0; i < fine.Length; i++) best[i] = Math.Min(best[i], SquaredDistance(fine[i], centre));
        }
        return chosen.Select(i => fine[i].Select(v => (double)v).ToArray()).ToArray();
    }

    private static int PickWeighted(double[] weights, Random random)
    {
        var total = weights.Sum();
        if (total <= 0) return random.Next(weights.Length);
        var target = random.NextDouble() * total;
        for (var i = 0; i < weights.Length; i++)
        {
            target -= weights[i];
            if (target <= 0) return i;
        }
        return weights.Length - 1;
    }

    private static double SquaredDistance(float[] a, double[] b)
    {
        double sum = 0;
        for (var i = 0; i < a.Length; i++)
        {
            var d = a[i] - b[i];
            sum += d * d;
        }
        return sum;
    }
}
