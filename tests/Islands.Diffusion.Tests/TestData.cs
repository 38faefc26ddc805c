using Islands.Diffusion.Data;
using Islands.Diffusion.Runtime;

namespace Islands.Diffusion.Tests;

/// <summary>Shared fixtures: a temporary directory per test and Fashion-MNIST imported once per test run.</summary>
public static class TestData
{
    private static readonly Lazy<string> FashionMnist = new(() =>
    {
        TorchSetup.Initialise(2);
        var dir = Path.Combine(Path.GetTempPath(), $"islands-fm-{Environment.ProcessId}");
        if (!File.Exists(Path.Combine(dir, DatasetManifest.FileName))) DatasetImporter.Import("fashion-mnist", dir);
        return dir;
    });

    /// <summary>Requires Debian's dataset-fashion-mnist, which .ci/run installs; a missing dataset fails the test loudly.</summary>
    public static string FashionMnistDirectory => FashionMnist.Value;

    public static string TempDir(string name)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"islands-test-{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    /// <summary>Small synthetic image set with planted groups: group g is prototype g plus noise.</summary>
    public static LabeledImages Planted(int groups, int perGroup, int size, int seed, double noise = 0.05)
    {
        var random = new Random(seed);
        var prototypes = Enumerable.Range(0, groups).Select(_ => Enumerable.Range(0, size * size).Select(_ => random.NextDouble()).ToArray()).ToArray();
        var pixels = new byte[groups * perGroup * size * size];
        var labels = new byte[groups * perGroup];
        for (var g = 0; g < groups; g++)
        for (var i = 0; i < perGroup; i++)
        {
            var index = g * perGroup + i;
            labels[index] = (byte)g;
            for (var p = 0; p < size * size; p++)
            {
                var value = prototypes[g][p] + noise * (random.NextDouble() * 2 - 1);
                pixels[index * size * size + p] = (byte)Math.Clamp(value * 255, 0, 255);
            }
        }
        return new LabeledImages(pixels, labels, 1, size, size);
    }
}

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialCollection
{
    public const string Name = "serial (measures process memory)";
}

/// <summary>
/// Tests that build two trainers at different moments and expect the same numbers: the trainer seeds libtorch's global
/// generator for its initial weights (the test its data), which a test running in parallel would draw from in between.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class GlobalRandomCollection
{
    public const string Name = "serial (seeds libtorch's global generator)";
}
