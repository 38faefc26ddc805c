using System.Buffers.Binary;
using System.Text;
using static TorchSharp.torch;

namespace Islands.Diffusion.Checkpoints;

/// <summary>
/// Reads TorchSharp's <c>module.save</c> format without building the module (and without libtorch): a LEB128 count,
/// then per tensor its name (a .NET length-prefixed string), LEB128 dtype, rank and dimensions, and the raw
/// little-endian bytes. Serving's scan uses it to refuse a published checkpoint whose weights hold NaN or infinity.
/// </summary>
public static class WeightsFile
{
    /// <summary>The name of the first floating-point tensor holding NaN or infinity, or null when every one is finite.</summary>
    public static string? FirstNonFinite(string path)
    {
        try
        {
            using var stream = new BufferedStream(File.OpenRead(path), 1 << 16);
            using var reader = new BinaryReader(stream, Encoding.UTF8);
            var count = Leb128(reader);
            var buffer = new byte[1 << 16];
            for (long i = 0; i < count; i++)
            {
                var name = reader.ReadString();
                var type = (ScalarType)Leb128(reader);
                var rank = Leb128(reader);
                long elements = 1;
                for (long d = 0; d < rank; d++) elements *= Leb128(reader);
                var size = ElementSize(type, path);
                var remaining = elements * size;
                var finite = true;
                while (remaining > 0)
                {
                    var chunk = (int)Math.Min(remaining, buffer.Length);
                    reader.BaseStream.ReadExactly(buffer, 0, chunk);
                    if (finite && !AllFinite(buffer.AsSpan(0, chunk), type)) finite = false;
                    remaining -= chunk;
                }
                if (!finite) return name;
            }
            return null;
        }
        catch (Exception e) when (e is EndOfStreamException or IOException or FormatException or OverflowException)
        {
            throw new CheckpointException(path, $"unreadable weights file ({e.Message})", e);
        }
    }

    private static long Leb128(BinaryReader reader)
    {
        long result = 0;
        for (var shift = 0; shift < 64; shift += 7)
        {
            var b = reader.ReadByte();
            result |= (long)(b & 0x7F) << shift;
            if ((b & 0x80) == 0) return result;
        }
        throw new FormatException("LEB128 value too long");
    }

    private static int ElementSize(ScalarType type, string path) => type switch
    {
        ScalarType.Byte or ScalarType.Int8 or ScalarType.Bool => 1,
        ScalarType.Int16 or ScalarType.Float16 or ScalarType.BFloat16 => 2,
        ScalarType.Int32 or ScalarType.Float32 => 4,
        ScalarType.Int64 or ScalarType.Float64 or ScalarType.ComplexFloat32 => 8,
        ScalarType.ComplexFloat64 => 16,
        _ => throw new CheckpointException(path, $"unsupported tensor type {type} in weights file"),
    };

    private static bool AllFinite(ReadOnlySpan<byte> bytes, ScalarType type)
    {
        switch (type)
        {
            case ScalarType.Float32 or ScalarType.ComplexFloat32:
                for (var i = 0; i + 4 <= bytes.Length; i += 4)
                    if ((BinaryPrimitives.ReadUInt32LittleEndian(bytes[i..]) & 0x7F800000u) == 0x7F800000u) return false;
                return true;
            case ScalarType.Float64 or ScalarType.ComplexFloat64:
                for (var i = 0; i + 8 <= bytes.Length; i += 8)
                    if ((BinaryPrimitives.ReadUInt64LittleEndian(bytes[i..]) & 0x7FF0000000000000UL) == 0x7FF0000000000000UL) return false;
                return true;
            case ScalarType.BFloat16:
                for (var i = 0; i + 2 <= bytes.Length; i += 2)
                    if ((BinaryPrimitives.ReadUInt16LittleEndian(bytes[i..]) & 0x7F80) == 0x7F80) return false;
                return true;
            case ScalarType.Float16:
                for (var i = 0; i + 2 <= bytes.Length; i += 2)
                    if ((BinaryPrimitives.ReadUInt16LittleEndian(bytes[i..]) & 0x7C00) == 0x7C00) return false;
                return true;
            default:
                return true;
        }
    }
}
