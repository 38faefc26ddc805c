using System.Buffers.Binary;
using System.IO.Compression;
using Islands.Diffusion.Data;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace Islands.Diffusion.Tests;

public sealed class DataImportSpecs
{
    private static byte[] IdxImages(int count, int h, int w, int magic = 0x803, int? actualBytes = null)
    {
        var bytes = new byte[16 + (actualBytes ?? count * h * w)];
        BinaryPrimitives.WriteInt32BigEndian(bytes, magic);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), count);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(8), h);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(12), w);
        for (var i = 16; i < bytes.Length; i++) bytes[i] = (byte)(i * 7);
        return bytes;
    }

    private static byte[] IdxLabels(int count, int magic = 0x801)
    {
        var bytes = new byte[8 + count];
        BinaryPrimitives.WriteInt32BigEndian(bytes, magic);
        BinaryPrimitives.WriteInt32BigEndian(bytes.AsSpan(4), count);
        for (var i = 0; i < count; i++) bytes[8 + i] = (byte)(i % 3);
        return bytes;
    }

    private static string IdxDir(byte[] trainImages, byte[] trainLabels, bool gzip = false)
    {
        var dir = TestData.TempDir("idx");
        void Write(string name, byte[] content)
        {
            if (!gzip) { File.WriteAllBytes(Path.Combine(dir, name), content); return; }
            using var file = File.Create(Path.Combine(dir, name + ".gz"));
            using var gz = new GZipStream(file, CompressionLevel.Fastest);
            gz.Write(content);
        }
        Write("train-images-idx3-ubyte", trainImages);
        Write("train-labels-idx1-ubyte", trainLabels);
        Write("t10k-images-idx3-ubyte", IdxImages(4, 5, 5));
        Write("t10k-labels-idx1-ubyte", IdxLabels(4));
        return dir;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Should_import_plain_and_gzipped_idx_pairs(bool gzip)
    {
        var source = IdxDir(IdxImages(10, 5, 5), IdxLabels(10), gzip);
        var output = Path.Combine(TestData.TempDir("out"), "ds");
        var manifest = DatasetImporter.Import($"idx:{source}", output);
        Assert.Equal(10, manifest.Splits["train"].Count);
        Assert.Equal(4, manifest.Splits["test"].Count);
        var loaded = CanonicalDataset.Load(output);
        Assert.Equal(IdxImages(10, 5, 5)[16..], loaded.Train.Pixels);
        Assert.Equal(3, loaded.ClassCount);
    }

    public static TheoryData<string, byte[], byte[], string> BadIdx => new()
    {
        { "train-images-idx3-ubyte", IdxImages(10, 5, 5, magic: 0x1234), IdxLabels(10), "wrong magic number 0x00001234" },
        { "train-images-idx3-ubyte", IdxImages(10, 5, 5, actualBytes: 120), IdxLabels(10), "truncated" },
        { "train-labels-idx1-ubyte", IdxImages(10, 5, 5), IdxLabels(9), "has 9 labels but train-images-idx3-ubyte has 10 images" },
        { "train-labels-idx1-ubyte", IdxImages(10, 5, 5), IdxLabels(10, magic: 0x803), "wrong magic number" },
    };

    [Theory]
    [MemberData(nameof(BadIdx))]
    public void Should_reject_bad_idx_files_naming_the_file_and_leave_nothing(string badFile, byte[] images, byte[] labels, string problem)
    {
        var source = IdxDir(images, labels);
        var parent = TestData.TempDir("out");
        var output = Path.Combine(parent, "ds");
        var error = Assert.Throws<DataFormatException>(() => DatasetImporter.Import($"idx:{source}", output));
        Assert.Contains(badFile, error.Message);
        Assert.Contains(problem, error.Message);
        Assert.DoesNotContain('\n', error.Message);
        Assert.Empty(Directory.GetFileSystemEntries(parent));
    }

    [Fact]
    public void Should_import_an_image_folder_resized_to_the_dataset_size()
    {
        var root = TestData.TempDir("folder");
        foreach (var (cls, shade) in new[] { ("boots", 40), ("shirts", 200) })
        {
            Directory.CreateDirectory(Path.Combine(root, cls));
            for (var i = 0; i < 4; i++)
            {
                using var image = new Image<L8>(40, 40, new L8((byte)shade));
                if (i % 2 == 0) image.SaveAsPng(Path.Combine(root, cls, $"{i}.png"));
                else image.SaveAsJpeg(Path.Combine(root, cls, $"{i}.jpg"));
            }
        }
        var output = Path.Combine(TestData.TempDir("out"), "ds");
        var manifest = DatasetImporter.Import($"folder:{root}", output, size: 28, testFraction: 0.25);
        Assert.Equal(["boots", "shirts"], manifest.Classes);
        Assert.Equal(6, manifest.Splits["train"].Count);
        Assert.Equal(2, manifest.Splits["test"].Count);
        var data = CanonicalDataset.Load(output);
        Assert.Equal(28, data.Manifest.Height);
        for (var i = 0; i < data.Train.Count; i++)
        {
            var mean = data.Train.Pixels.Skip(i * 784).Take(784).Average(b => b);
            Assert.InRange(mean, data.Train.Labels[i] == 0 ? 30 : 190, data.Train.Labels[i] == 0 ? 50 : 210);
        }
    }

    [Fact]
    public void Should_reject_an_unreadable_image_naming_it()
    {
        var root = TestData.TempDir("folder");
        Directory.CreateDirectory(Path.Combine(root, "a"));
        using (var image = new Image<L8>(8, 8)) image.SaveAsPng(Path.Combine(root, "a", "good.png"));
        File.WriteAllText(Path.Combine(root, "a", "broken.png"), "this is not a png");
        var parent = TestData.TempDir("out");
        var error = Assert.Throws<DataFormatException>(() => DatasetImporter.Import($"folder:{root}", Path.Combine(parent, "ds")));
        Assert.Contains("broken.png", error.Message);
        Assert.Contains("unreadable image", error.Message);
        Assert.Empty(Directory.GetFileSystemEntries(parent));
    }

    [Fact]
    public void Should_reject_an_empty_folder()
    {
        var root = TestData.TempDir("empty");
        var error = Assert.Throws<DataFormatException>(() => DatasetImporter.Import($"folder:{root}", Path.Combine(TestData.TempDir("out"), "ds")));
        Assert.Contains("empty folder", error.Message);
    }

    [Fact]
    public void Should_detect_a_corrupted_dataset_file_by_hash()
    {
        var source = IdxDir(IdxImages(10, 5, 5), IdxLabels(10));
        var output = Path.Combine(TestData.TempDir("out"), "ds");
        DatasetImporter.Import($"idx:{source}", output);
        var file = Path.Combine(output, "train-images.u8");
        var bytes = File.ReadAllBytes(file);
        bytes[3] ^= 0xff;
        File.WriteAllBytes(file, bytes);
        var error = Assert.Throws<DataFormatException>(() => CanonicalDataset.Load(output));
        Assert.Contains("train-images.u8", error.Message);
        Assert.Contains("SHA-256", error.Message);
    }

    [Fact]
    public void Should_import_debians_fashion_mnist()
    {
        var data = CanonicalDataset.Load(TestData.FashionMnistDirectory);
        Assert.Equal(60000, data.Train.Count);
        Assert.Equal(10000, data.Test.Count);
        Assert.Equal("Ankle boot", data.Manifest.Classes[9]);
        Assert.Equal(6000, data.Train.Labels.Count(l => l == 9));
    }
}
