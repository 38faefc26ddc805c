using Islands.Diffusion.Data;
using Islands.Diffusion.Imaging;
using Islands.Diffusion.Metrics;
using static TorchSharp.torch;

namespace Islands.Island.Tests;

/// <summary>
/// Looks at generated images, not their shape: every tile must vary (an all-black or flat grid fails) and the project's
/// classifier, trained on the same dataset, must put them in the classes they were generated for well above chance.
/// </summary>
public static class RecognisableSamples
{
    /// <summary>Returns the fraction of tiles the classifier puts in their class; asserts variation and the threshold.</summary>
    public static double AssertGrid(byte[] png, int columns, IReadOnlyList<long> classes, string dataDirectory, double minimumAgreement)
    {
        var data = CanonicalDataset.Load(dataDirectory);
        var (channels, height, width) = (data.Manifest.Channels, data.Manifest.Height, data.Manifest.Width);
        var tiles = ImageGrid.DecodeTiles(png, classes.Count, height, width, columns);
        for (var i = 0; i < classes.Count; i++)
        {
            var tile = tiles.AsSpan(i * height * width, height * width).ToArray();
            Assert.True(tile.Max() - tile.Min() >= 32, $"tile {i} (class {classes[i]}) is flat: pixel range {tile.Min()}..{tile.Max()}");
        }
        using var evaluator = Evaluator.ForDataset(data, epochs: 1);
        using var images = tensor(tiles, ScalarType.Byte).reshape(classes.Count, channels, height, width).to_type(ScalarType.Float32) / 127.5f - 1f;
        var agreement = evaluator.ClassAgreement(images, classes);
        Assert.True(agreement >= minimumAgreement,
            $"the classifier (test accuracy {evaluator.Info.TestAccuracy:P1}) put only {agreement:P1} of the samples in their class; chance is {1.0 / data.ClassCount:P1}, required {minimumAgreement:P0}");
        return agreement;
    }
}
