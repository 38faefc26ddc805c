using System.Security.Cryptography;
using Islands.Diffusion.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Islands.Diffusion.Partitioning;

public sealed record PartitionOptions(int K = 4, int FineClusters = 1024, int EmbeddingDimensions = 64, double BalanceTolerance = 0.05,
    int Seed = 0, string Method = "kmeans")
{
    public IEnumerable<string> Validate()
    {
        if (K < 1) yield return $"k: {K} must be at least 1";
        if (FineClusters < K) yield return $"fineClusters: {FineClusters} fine clusters must be at least k ({K})";
        if (EmbeddingDimensions < 1) yield return $"embeddingDimensions: {EmbeddingDimensions} must be at least 1";
        if (BalanceTolerance is < 0 or > 1) yield return $"balanceTolerance: {BalanceTolerance} must lie in [0, 1]";
        if (Method is not ("kmeans" or "random")) yield return $"method: '{Method}' must be kmeans or random";
    }
}

/// <summary>
/// DDM's partitioning: embed, cluster into fine centroids, merge those into K balanced coarse clusters, then give each
/// image the coarse cluster of its nearest fine centroid. "random" is the paper's weaker baseline (equal random shards).
/// </summary>
public static class Partitioner
{
    public static PartitionFile Partition(LabeledImages train, IReadOnlyList<string> classes, PartitionOptions options, string datasetDirectory = "")
    {
        ConfigException.ThrowFirst(options.Validate());
        var n = train.Count;
        var sha = Convert.ToHexStringLower(SHA256.HashData(train.Pixels));
        if (options.Method == "random") return RandomShards(train, classes, options, datasetDirectory, sha);

        var fineCount = Math.Min(options.FineClusters, n);
        using var scope = NewDisposeScope();
        var images = ImageTensors.ToTensor(train);
        var embedding = PcaEmbedding.Fit(images, Math.Min(options.EmbeddingDimensions, train.ImageBytes));
        var features = embedding.Embed(images);
        var fine = KMeans.Fit(features, fineCount, options.Seed);
        var merged = BalancedMerge.Merge(fine.Centroids, fine.Counts, options.K, options.BalanceTolerance, options.Seed);
        var assignments = fine.Assignments.Select(a => merged.FineToCoarse[a]).ToArray();
        return Finish(train, classes, options, datasetDirectory, sha, embedding.Export(), fine.Centroids, merged.FineToCoarse, merged.Centroids,
            assignments, fineCount);
    }

    private static PartitionFile RandomShards(LabeledImages train, IReadOnlyList<string> classes, PartitionOptions options,
        string datasetDirectory, string sha)
    {
        var order = Enumerable.Range(0, train.Count).ToArray();
        new Random(options.Seed).Shuffle(order);
        var assignments = new int[train.Count];
        for (var i = 0; i < order.Length; i++) assignments[order[i]] = i % options.K;
        return Finish(train, classes, options, datasetDirectory, sha, null, [], [], [], assignments, 0);
    }

    private static PartitionFile Finish(LabeledImages train, IReadOnlyList<string> classes, PartitionOptions options, string datasetDirectory,
        string sha, EmbeddingParameters? embedding, float[][] fineCentroids, int[] fineToCoarse, double[][] coarse, int[] assignments, int fineCount)
    {
        var sizes = new long[options.K];
        var histogram = Enumerable.Range(0, options.K).Select(_ => new long[Math.Max(classes.Count, 1)]).ToArray();
        for (var i = 0; i < assignments.Length; i++)
        {
            sizes[assignments[i]]++;
            var label = train.Labels[i];
            if (label < histogram[0].Length) histogram[assignments[i]][label]++;
        }
        return new PartitionFile(PartitionFile.CurrentSchemaVersion, options.Method, datasetDirectory, sha, options.Seed, options.K, fineCount,
            options.BalanceTolerance, embedding, fineCentroids, fineToCoarse, coarse, assignments, sizes, histogram, classes);
    }
}
