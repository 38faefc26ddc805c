using System.Globalization;
using System.Text;

namespace Islands.Diffusion.IO;

/// <summary>NumPy .npy (version 1.0, little-endian float32, C order): readable by numpy and by Islands itself.</summary>
public static class Npy
{
    private static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0];

    public static void WriteFloat32(string path, float[] data, long[] shape)
    {
        if (shape.Aggregate(1L, (a, b) => a * b) != data.Length) throw new ArgumentException("shape does not match the data length");
        var dims = string.Join(", ", shape.Select(s => s.ToString(CultureInfo.InvariantCulture))) + (shape.Length == 1 ? "," : "");
        var header = $"{{'descr': '<f4', 'fortran_order': False, 'shape': ({dims}), }}";
        var total = Magic.Length + 2 + header.Length + 1;
        header = header.PadRight(header.Length + (64 - total % 64) % 64) + "\n";
        AtomicFile.Write(path, stream =>
        {
            stream.Write(Magic);
            stream.Write(BitConverter.GetBytes((ushort)header.Length));
            stream.Write(Encoding.ASCII.GetBytes(header));
            var bytes = new byte[data.Length * 4];
            Buffer.BlockCopy(data, 0, bytes, 0, bytes.Length);
            stream.Write(bytes);
        });
    }

    public static (float[] Data, long[] Shape) ReadFloat32(string path)
    {
        if (!File.Exists(path)) throw new DataFormatException(path, "file not found");
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < 10 || !bytes.AsSpan(0, 6).SequenceEqual(Magic.AsSpan(0, 6)))
            throw new DataFormatException(path, "not a .npy file (bad magic)");
        var headerLength = BitConverter.ToUInt16(bytes, 8);
        var header = Encoding.ASCII.GetString(bytes, 10, headerLength);
        if (!header.Contains("'<f4'", StringComparison.Ordinal))
            throw new DataFormatException(path, "only little-endian float32 (<f4) arrays are supported");
        var shapeText = header[(header.IndexOf("'shape': (", StringComparison.Ordinal) + 10)..];
        shapeText = shapeText[..shapeText.IndexOf(')')];
        var shape = shapeText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(s => long.Parse(s, CultureInfo.InvariantCulture)).ToArray();
        var count = shape.Aggregate(1L, (a, b) => a * b);
        var offset = 10 + headerLength;
        if (bytes.Length - offset != count * 4)
            throw new DataFormatException(path, $"truncated: expected {count * 4} data bytes, found {bytes.Length - offset}");
        var data = new float[count];
        Buffer.BlockCopy(bytes, offset, data, 0, (int)(count * 4));
        return (data, shape);
    }
}
