using Islands.Diffusion.Partitioning;
using Islands.Diffusion.Runtime;

namespace Islands.Diffusion.Tests;

public sealed class PartitioningSpecs
{
    private static readonly string[] Groups = ["g0", "g1", "g2", "g3"];

    [Fact]
    public void Should_recover_planted_clusters()
    {
        TorchSetup.Initialise(2);
        var data = TestData.Planted(groups: 4, perGroup: 150, size: 12, seed: 3);
        var file = Partitioner.Partition(data, Groups, new PartitionOptions(K: 4, FineClusters: 32, EmbeddingDimensions: 16, Seed: 1));
        // Each partition must hold exactly one planted group (the labels are the planted groups).
        for (var k = 0; k < 4; k++)
        {
            var histogram = file.ClassHistogram[k];
            Assert.Equal(150, histogram.Max());
            Assert.Equal(150, histogram.Sum());
        }
    }

    [Fact]
    public void Should_keep_sizes_within_the_balance_tolerance_on_uneven_data()
    {
        TorchSetup.Initialise(2);
        // Two large and two small planted groups: plain k-means would give sizes 300/300/60/60.
        var big = TestData.Planted(groups: 2, perGroup: 300, size: 10, seed: 5);
        var small = TestData.Planted(groups: 2, perGroup: 60, size: 10, seed: 6);
        var pixels = big.Pixels.Concat(small.Pixels).ToArray();
        var labels = big.Labels.Concat(small.Labels.Select(l => (byte)(l + 2))).ToArray();
        var data = new Data.LabeledImages(pixels, labels, 1, 10, 10);
        const double tolerance = 0.05;
        var file = Partitioner.Partition(data, Groups, new PartitionOptions(K: 4, FineClusters: 60, EmbeddingDimensions: 16, BalanceTolerance: tolerance, Seed: 2));
        var ideal = data.Count / 4.0;
        Assert.All(file.Sizes, size => Assert.True(size <= Math.Ceiling(ideal * (1 + tolerance)), $"size {size} exceeds {(1 + tolerance) * ideal}"));
        Assert.All(file.Sizes, size => Assert.True(size >= ideal * (1 - 3 * tolerance) - 1, $"size {size} is below the implied lower bound"));
        Assert.Equal(data.Count, file.Sizes.Sum());
    }

    [Fact]
    public void Should_produce_the_same_file_for_the_same_seed()
    {
        TorchSetup.Initialise(2);
        var data = TestData.Planted(groups: 3, perGroup: 100, size: 10, seed: 9, noise: 0.4);
        var options = new PartitionOptions(K: 3, FineClusters: 24, EmbeddingDimensions: 8, Seed: 4);
        var dir = TestData.TempDir("partition");
        Partitioner.Partition(data, Groups, options).Save(Path.Combine(dir, "a.json"));
        Partitioner.Partition(data, Groups, options).Save(Path.Combine(dir, "b.json"));
        Partitioner.Partition(data, Groups, options with { Seed = 5 }).Save(Path.Combine(dir, "c.json"));
        Assert.Equal(File.ReadAllText(Path.Combine(dir, "a.json")), File.ReadAllText(Path.Combine(dir, "b.json")));
        Assert.NotEqual(PartitionFile.Load(Path.Combine(dir, "a.json")).FineCentroids[0], PartitionFile.Load(Path.Combine(dir, "c.json")).FineCentroids[0]);
    }

    [Fact]
    public void Should_split_randomly_into_equal_shards_for_the_baseline()
    {
        var data = TestData.Planted(groups: 2, perGroup: 50, size: 6, seed: 1);
        var file = Partitioner.Partition(data, Groups, new PartitionOptions(K: 4, FineClusters: 4, Method: "random"));
        Assert.Equal([25L, 25, 25, 25], file.Sizes);
        Assert.Null(file.Embedding);
    }
}
