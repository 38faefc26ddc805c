using System.Runtime.InteropServices;
using Islands.Diffusion.Modules;
using Islands.Diffusion.Sampling;
using static TorchSharp.torch;

namespace Islands.Diffusion.Serving;

/// <summary>
/// A sampler entity's answer at the messaging boundary: raw float32 rows in, <see cref="GuidedVelocity"/> on them,
/// raw float32 velocities out. Holds no math of its own.
/// </summary>
public static class ExpertVelocity
{
    /// <param name="x">rows × C·H·W float32 values, as bytes.</param>
    /// <param name="classes">Class per row; -1 is unconditional.</param>
    public static byte[] Evaluate(IVelocityModel model, ReadOnlySpan<byte> x, float[] t, long[] classes, float[] cfg, (long C, long H, long W) shape)
    {
        var n = t.Length;
        if (classes.Length != n || cfg.Length != n || x.Length != n * shape.C * shape.H * shape.W * sizeof(float))
            throw new ArgumentException($"velocity request of {n} rows has {classes.Length} classes, {cfg.Length} cfg and {x.Length} bytes");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var xs = FromBytes(x, [n, shape.C, shape.H, shape.W]);
        return ToBytes(GuidedVelocity.Evaluate(model, xs, tensor(t), tensor(classes), tensor(cfg)));
    }

    /// <summary>A tensor's values as raw float32 bytes (one copy).</summary>
    public static byte[] ToBytes(Tensor values)
    {
        using var dense = values.to_type(ScalarType.Float32).contiguous();
        return dense.bytes.ToArray();
    }

    /// <summary>Raw float32 bytes as a tensor of the given shape (one copy).</summary>
    public static Tensor FromBytes(ReadOnlySpan<byte> bytes, long[] shape)
    {
        if (bytes.Length != shape.Aggregate(1L, (a, b) => a * b) * sizeof(float))
            throw new ArgumentException($"{bytes.Length} bytes cannot be a float32 tensor of shape [{string.Join(", ", shape)}]");
        var result = empty(shape, dtype: ScalarType.Float32);
        bytes.CopyTo(result.bytes);
        return result;
    }

    public static byte[] ToBytes(ReadOnlySpan<float> values) => MemoryMarshal.AsBytes(values).ToArray();
}
