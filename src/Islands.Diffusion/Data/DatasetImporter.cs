using Islands.Diffusion.IO;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace Islands.Diffusion.Data;

/// <summary>
/// Turns a raw source (Debian's Fashion-MNIST, any IDX pair, or a folder of class subfolders) into one canonical dataset
/// directory. The directory appears only once complete: a bad input leaves nothing behind.
/// </summary>
public static class DatasetImporter
{
    public const string FashionMnistDirectory = "/usr/share/datasets/fashion-mnist";

    public static readonly IReadOnlyList<string> FashionMnistClasses =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    private static readonly string[] ImageExtensions = [".png", ".jpg", ".jpeg"];

    /// <summary>Where Debian's package puts Fashion-MNIST; ISLANDS_FASHION_MNIST_DIR points elsewhere (a copy, or a test of the fallback).</summary>
    public static string FashionMnistLocation =>
        Environment.GetEnvironmentVariable("ISLANDS_FASHION_MNIST_DIR") is { Length: > 0 } dir ? dir : FashionMnistDirectory;

    public static bool FashionMnistInstalled => Directory.Exists(FashionMnistLocation);

    /// <summary>
    /// Parses "fashion-mnist", "synthetic", "synthetic-rgb", "idx:DIR" or "folder:DIR" and imports it into <paramref name="outDir"/>.
    /// </summary>
    public static DatasetManifest Import(string source, string outDir, int size = 28, double testFraction = 1.0 / 7, int seed = 0)
    {
        if (Directory.Exists(outDir) && Directory.EnumerateFileSystemEntries(outDir).Any())
            throw new ConfigException("runDirectory", $"{outDir} already exists and is not empty; choose a new directory");
        if (source == "fashion-mnist")
        {
            if (!FashionMnistInstalled)
                throw new IslandsException($"{FashionMnistLocation}: Fashion-MNIST is not installed; install it with 'apt-get install " +
                    "dataset-fashion-mnist'");
            return ImportIdx(FashionMnistLocation, outDir, "fashion-mnist", source, FashionMnistClasses);
        }
        if (source == "synthetic")
        {
            var (train, test) = SyntheticShapes.Generate(seed: seed);
            return Write(outDir, "synthetic-shapes", source, SyntheticShapes.Classes, train, test);
        }
        if (source == "synthetic-rgb")
        {
            var (train, test) = SyntheticColourShapes.Generate(seed: seed);
            return Write(outDir, "synthetic-colour-shapes", source, SyntheticColourShapes.Classes, train, test);
        }
        if (source.StartsWith("idx:", StringComparison.Ordinal))
            return ImportIdx(source[4..], outDir, Path.GetFileName(Path.GetFullPath(source[4..]).TrimEnd('/')), source, null);
        if (source.StartsWith("folder:", StringComparison.Ordinal))
            return ImportFolder(source[7..], outDir, size, testFraction, seed, source);
        throw new ConfigException("source",
            $"'{source}' is not a known source; use fashion-mnist, synthetic, synthetic-rgb, idx:DIR or folder:DIR");
    }

    public static DatasetManifest ImportIdx(string dir, string outDir, string name, string source, IReadOnlyList<string>? classNames)
    {
        if (!Directory.Exists(dir)) throw new DataFormatException(dir, "directory not found");
        var train = ReadIdxPair(dir, "train");
        var test = ReadIdxPair(dir, "t10k");
        if (train.Height != test.Height || train.Width != test.Width)
            throw new DataFormatException(dir, $"train images are {train.Height}x{train.Width} but test images are {test.Height}x{test.Width}");
        var classCount = Math.Max(train.Labels.Max(), test.Labels.Max()) + 1;
        var classes = classNames is { } named && named.Count >= classCount
            ? named.ToList()
            : Enumerable.Range(0, classCount).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToList();
        return Write(outDir, name, source, classes, train, test);
    }

    private static LabeledImages ReadIdxPair(string dir, string prefix)
    {
        var imagesPath = FindIdx(dir, $"{prefix}-images-idx3-ubyte");
        var labelsPath = FindIdx(dir, $"{prefix}-labels-idx1-ubyte");
        var (pixels, count, height, width) = IdxReader.ReadImages(imagesPath);
        var labels = IdxReader.ReadLabels(labelsPath);
        if (labels.Length != count)
            throw new DataFormatException(labelsPath, $"has {labels.Length} labels but {Path.GetFileName(imagesPath)} has {count} images");
        return new LabeledImages(pixels, labels, 1, height, width);
    }

    private static string FindIdx(string dir, string stem)
    {
        foreach (var candidate in new[] { stem, stem + ".gz", stem.Replace("-idx", ".idx", StringComparison.Ordinal) })
        {
            var path = Path.Combine(dir, candidate);
            if (File.Exists(path)) return path;
        }
        throw new DataFormatException(Path.Combine(dir, stem), "file not found (looked for it with and without .gz)");
    }

    public static DatasetManifest ImportFolder(string dir, string outDir, int size, double testFraction, int seed, string source)
    {
        if (!Directory.Exists(dir)) throw new DataFormatException(dir, "directory not found");
        if (size is < 4 or > 1024) throw new ConfigException("size", $"{size} is outside 4..1024");
        var classDirs = Directory.GetDirectories(dir).Where(d => !Path.GetFileName(d).StartsWith('.')).Order(StringComparer.Ordinal).ToList();
        if (classDirs.Count == 0) throw new DataFormatException(dir, "empty folder: expected one subfolder per class holding PNG or JPEG images");
        var files = new List<(string Path, byte Label)>();
        for (var c = 0; c < classDirs.Count; c++)
        {
            if (c > 255) throw new DataFormatException(dir, "more than 256 classes");
            var images = Directory.GetFiles(classDirs[c]).Where(f => ImageExtensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
                .Order(StringComparer.Ordinal).ToList();
            if (images.Count == 0) throw new DataFormatException(classDirs[c], "empty class folder: no .png, .jpg or .jpeg images");
            files.AddRange(images.Select(f => (f, (byte)c)));
        }
        var pixels = new byte[files.Count * size * size];
        for (var i = 0; i < files.Count; i++)
        {
            try
            {
                using var image = Image.Load<L8>(files[i].Path);
                image.Mutate(x => x.Resize(size, size));
                image.CopyPixelDataTo(pixels.AsSpan(i * size * size, size * size));
            }
            catch (Exception e) when (e is UnknownImageFormatException or InvalidImageContentException or NotSupportedException or IOException)
            {
                throw new DataFormatException(files[i].Path, $"unreadable image ({e.Message.Split('\n')[0].Trim()})", e);
            }
        }
        var order = Enumerable.Range(0, files.Count).ToArray();
        new Random(seed).Shuffle(order);
        var testCount = (int)Math.Round(files.Count * testFraction);
        var all = new LabeledImages(pixels, files.Select(f => f.Label).ToArray(), 1, size, size);
        var test = all.Subset(order[..testCount]);
        var train = all.Subset(order[testCount..]);
        if (train.Count == 0) throw new DataFormatException(dir, $"only {files.Count} images: nothing left for training after the test split");
        return Write(outDir, Path.GetFileName(Path.GetFullPath(dir).TrimEnd('/')), source, classDirs.Select(Path.GetFileName).ToList()!, train, test);
    }

    public static DatasetManifest Write(string outDir, string name, string source, IReadOnlyList<string> classes, LabeledImages train,
        LabeledImages test)
    {
        DatasetManifest? manifest = null;
        var replace = Directory.Exists(outDir); // only an empty directory can exist here (checked by Import)
        AtomicFile.WriteDirectory(outDir, temp =>
        {
            var hashes = new Dictionary<string, string>();
            var splits = new Dictionary<string, DatasetSplitInfo>();
            foreach (var (split, data) in new[] { ("train", train), ("test", test) })
            {
                var images = $"{split}-images.u8";
                var labels = $"{split}-labels.u8";
                File.WriteAllBytes(Path.Combine(temp, images), data.Pixels);
                File.WriteAllBytes(Path.Combine(temp, labels), data.Labels);
                hashes[images] = AtomicFile.Sha256(Path.Combine(temp, images));
                hashes[labels] = AtomicFile.Sha256(Path.Combine(temp, labels));
                splits[split] = new DatasetSplitInfo(data.Count, images, labels);
            }
            manifest = new DatasetManifest(DatasetManifest.CurrentSchemaVersion, name, source, train.Channels, train.Height, train.Width,
                classes, splits, hashes, DateTimeOffset.UtcNow);
            File.WriteAllText(Path.Combine(temp, DatasetManifest.FileName), Json.Serialize(manifest));
        }, replace);
        return manifest!;
    }
}
