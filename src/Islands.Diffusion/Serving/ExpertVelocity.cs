using System.Runtime.InteropServices;
using Islands.Diffusion.Modules;
using static TorchSharp.torch;

namespace Islands.Diffusion.Serving;

/// <summary>
/// One expert's velocity for a batch of rows that may each carry their own time, class and guidance scale (rows of
/// different requests share a batch). Guided rows (a class, cfg ≠ 1) also run unconditionally in the same batch and
/// combine as v_u + cfg·(v_c - v_u), exactly as the offline sampler does.
/// </summary>
public static class ExpertVelocity
{
    /// <param name="x">rows × C·H·W floats.</param>
    /// <param name="classes">Class per row; -1 is unconditional.</param>
    public static float[] Evaluate(IVelocityModel model, ReadOnlySpan<float> x, float[] t, long[] classes, float[] cfg, (long C, long H, long W) shape)
    {
        var n = t.Length;
        if (classes.Length != n || cfg.Length != n || x.Length != n * shape.C * shape.H * shape.W)
            throw new ArgumentException($"velocity request of {n} rows has {classes.Length} classes, {cfg.Length} cfg and {x.Length} floats");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var guided = Enumerable.Range(0, n).Where(i => classes[i] >= 0 && cfg[i] != 1f).ToArray();
        var xs = tensor(x.ToArray()).view(n, shape.C, shape.H, shape.W);
        var ts = tensor(t);
        var cs = tensor(classes.Select(c => c < 0 ? model.NullClass : c).ToArray());
        if (guided.Length > 0)
        {
            var g = tensor(guided.Select(i => (long)i).ToArray());
            xs = cat([xs, xs.index_select(0, g)], 0);
            ts = cat([ts, ts.index_select(0, g)], 0);
            cs = cat([cs, full(guided.Length, model.NullClass, dtype: ScalarType.Int64)], 0);
        }
        var v = model.Velocity(xs, ts, cs).to_type(ScalarType.Float32);
        var result = v[..n].clone();
        if (guided.Length > 0)
        {
            var g = tensor(guided.Select(i => (long)i).ToArray());
            var vc = result.index_select(0, g);
            var vu = v[n..];
            var w = tensor(guided.Select(i => cfg[i]).ToArray()).view(-1, 1, 1, 1);
            result.index_copy_(0, g, vu + w * (vc - vu));
        }
        return result.contiguous().data<float>().ToArray();
    }

    public static byte[] ToBytes(ReadOnlySpan<float> values) => MemoryMarshal.AsBytes(values).ToArray();

    public static float[] FromBytes(ReadOnlySpan<byte> bytes) => MemoryMarshal.Cast<byte, float>(bytes).ToArray();
}
