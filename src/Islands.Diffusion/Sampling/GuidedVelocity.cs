using System.Runtime.InteropServices;
using Islands.Diffusion.Modules;
using static TorchSharp.torch;

namespace Islands.Diffusion.Sampling;

/// <summary>
/// One model's velocity for a batch whose rows may each carry their own time, class and guidance scale (rows of
/// different requests share a batch in serving). Class -1 is unconditional: the model's own null class. A guided row (a
/// class and cfg ≠ 1) also runs unconditionally in the same batch and combines as v_u + cfg·(v_c − v_u). Offline
/// sampling, the ensemble, serving and score queries all evaluate an expert through this one function; serving's
/// sampler entities get and answer their rows as raw float32 bytes (the wire form below), which holds no math.
/// </summary>
public static class GuidedVelocity
{
    /// <param name="x">[B, C, H, W] states.</param>
    /// <param name="t">[B] times.</param>
    /// <param name="classes">[B] int64 classes; -1 is unconditional.</param>
    /// <param name="cfg">[B] guidance scales.</param>
    public static Tensor Evaluate(IVelocityModel model, Tensor x, Tensor t, Tensor classes, Tensor cfg)
    {
        using var scope = NewDisposeScope();
        var n = x.shape[0];
        var conditional = classes >= 0;
        var own = where(conditional, classes, full_like(classes, model.NullClass));
        var guidedRows = conditional.logical_and(cfg.ne(1.0)).nonzero().squeeze(1);
        var guided = guidedRows.shape[0];
        if (guided == 0) return model.Velocity(x, t, own).MoveToOuterDisposeScope();

        // All rows guided (offline sampling with cfg): the doubled batch without gathering.
        var all = guided == n;
        var xu = all ? x : x.index_select(0, guidedRows);
        var tu = all ? t : t.index_select(0, guidedRows);
        var v = model.Velocity(cat([x, xu], 0), cat([t, tu], 0),
            cat([own, full(guided, model.NullClass, dtype: ScalarType.Int64, device: x.device)], 0));
        var vc = v[..(int)n];
        var vu = v[(int)n..];
        var scale = (all ? cfg : cfg.index_select(0, guidedRows)).to_type(v.dtype).view([guided, .. Enumerable.Repeat(1L, (int)x.dim() - 1)]);
        if (all) return (vu + scale * (vc - vu)).MoveToOuterDisposeScope();
        var result = vc.clone();
        result.index_copy_(0, guidedRows, vu + scale * (result.index_select(0, guidedRows) - vu));
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>Every row at the same time t and guidance scale (offline sampling).</summary>
    public static Tensor Evaluate(IVelocityModel model, Tensor x, double t, Tensor classes, double cfg)
    {
        using var scope = NewDisposeScope();
        var times = FlowSampler.TimeColumn(x, t);
        return Evaluate(model, x, times, classes, full(x.shape[0], cfg, dtype: times.dtype, device: x.device)).MoveToOuterDisposeScope();
    }

    /// <summary>A sampler entity's answer: rows × C·H·W float32 values as bytes in, their velocities as bytes out.</summary>
    /// <param name="classes">Class per row; -1 is unconditional.</param>
    public static byte[] Evaluate(IVelocityModel model, ReadOnlySpan<byte> x, float[] t, long[] classes, float[] cfg, (long C, long H, long W) shape)
    {
        var n = t.Length;
        if (classes.Length != n || cfg.Length != n || x.Length != n * shape.C * shape.H * shape.W * sizeof(float))
            throw new ArgumentException($"velocity request of {n} rows has {classes.Length} classes, {cfg.Length} cfg and {x.Length} bytes");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var xs = FromBytes(x, [n, shape.C, shape.H, shape.W]);
        return ToBytes(Evaluate(model, xs, tensor(t), tensor(classes), tensor(cfg)));
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
