using Islands.Diffusion.IO;

namespace Islands.Diffusion.Partitioning;

/// <summary>
/// The result of partitioning a dataset: one coarse cluster per training image, plus everything needed to explain and
/// reproduce it (embedding parameters, fine and coarse centroids, sizes, per-class histograms).
/// </summary>
public sealed record PartitionFile(
    int SchemaVersion,
    string Method,
    string DatasetDirectory,
    string DatasetTrainSha256,
    int Seed,
    int K,
    int FineClusters,
    double BalanceTolerance,
    EmbeddingParameters? Embedding,
    float[][] FineCentroids,
    int[] FineToCoarse,
    double[][] CoarseCentroids,
    int[] Assignments,
    long[] Sizes,
    long[][] ClassHistogram,
    IReadOnlyList<string> Classes)
{
    public const int CurrentSchemaVersion = 1;

    public static PartitionFile Load(string path)
    {
        var file = Json.Read<PartitionFile>(path);
        if (file.SchemaVersion != CurrentSchemaVersion)
            throw new IslandsException($"{path}: schemaVersion {file.SchemaVersion} is not supported (expected {CurrentSchemaVersion})");
        if (file.Assignments.Any(a => a < 0 || a >= file.K))
            throw new IslandsException($"{path}: assignments must lie in 0..{file.K - 1}");
        return file;
    }

    public void Save(string path) => Json.WriteAtomic(path, this);

    /// <summary>Indices of the training images assigned to partition <paramref name="k"/>.</summary>
    public int[] Members(int k)
    {
        if (k < 0 || k >= K) throw new ConfigException("expert", $"{k} is outside the partition file's 0..{K - 1}");
        return Enumerable.Range(0, Assignments.Length).Where(i => Assignments[i] == k).ToArray();
    }
}
