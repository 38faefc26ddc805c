using System.Buffers.Binary;
using System.IO.Compression;

namespace Islands.Diffusion.Data;

/// <summary>Reads the IDX format of MNIST and Fashion-MNIST (big-endian header), gzipped or not.</summary>
public static class IdxReader
{
    private const int ImagesMagic = 0x00000803;
    private const int LabelsMagic = 0x00000801;

    public static (byte[] Pixels, int Count, int Height, int Width) ReadImages(string path)
    {
        var bytes = ReadMaybeGzipped(path);
        if (bytes.Length < 16) throw new DataFormatException(path, $"truncated: {bytes.Length} bytes is shorter than the 16-byte IDX image header");
        var magic = BinaryPrimitives.ReadInt32BigEndian(bytes);
        if (magic != ImagesMagic)
            throw new DataFormatException(path, $"wrong magic number 0x{magic:x8} (an IDX image file starts with 0x{ImagesMagic:x8})");
        var count = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(4));
        var height = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(8));
        var width = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(12));
        if (count <= 0 || height <= 0 || width <= 0 || height > 4096 || width > 4096)
            throw new DataFormatException(path, $"implausible header: {count} images of {height}x{width}");
        var expected = 16L + (long)count * height * width;
        if (bytes.Length < expected)
            throw new DataFormatException(path, $"truncated: header promises {count} images of {height}x{width} ({expected} bytes) but the file " +
                $"has {bytes.Length}");
        if (bytes.Length > expected)
            throw new DataFormatException(path, $"{bytes.Length - expected} unexpected trailing bytes after {count} images");
        return (bytes[16..], count, height, width);
    }

    public static byte[] ReadLabels(string path)
    {
        var bytes = ReadMaybeGzipped(path);
        if (bytes.Length < 8) throw new DataFormatException(path, $"truncated: {bytes.Length} bytes is shorter than the 8-byte IDX label header");
        var magic = BinaryPrimitives.ReadInt32BigEndian(bytes);
        if (magic != LabelsMagic)
            throw new DataFormatException(path, $"wrong magic number 0x{magic:x8} (an IDX label file starts with 0x{LabelsMagic:x8})");
        var count = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(4));
        if (count <= 0) throw new DataFormatException(path, $"implausible label count {count}");
        if (bytes.Length < 8L + count)
            throw new DataFormatException(path, $"truncated: header promises {count} labels but the file has {bytes.Length - 8}");
        if (bytes.Length > 8L + count)
            throw new DataFormatException(path, $"{bytes.Length - 8 - count} unexpected trailing bytes after {count} labels");
        return bytes[8..];
    }

    private static byte[] ReadMaybeGzipped(string path)
    {
        if (!File.Exists(path)) throw new DataFormatException(path, "file not found");
        var raw = File.ReadAllBytes(path);
        if (raw.Length < 2 || raw[0] != 0x1f || raw[1] != 0x8b) return raw;
        try
        {
            using var gz = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
            using var output = new MemoryStream();
            gz.CopyTo(output);
            return output.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new DataFormatException(path, $"corrupt or truncated gzip stream ({e.Message})", e);
        }
    }
}
