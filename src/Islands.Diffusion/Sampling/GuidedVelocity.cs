using Islands.Diffusion.Modules;
using static TorchSharp.torch;

namespace Islands.Diffusion.Sampling;

/// <summary>
/// One model's velocity for a batch whose rows may each carry their own time, class and guidance scale (rows of
/// different requests share a batch in serving). Class -1 is unconditional: the model's own null class. A guided row (a
/// class and cfg ≠ 1) also runs unconditionally in the same batch and combines as v_u + cfg·(v_c − v_u). Offline
/// sampling, the ensemble, serving and score queries all evaluate an expert through this one function.
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
}
