using static TorchSharp.torch;

namespace Islands.Diffusion.Modules;

public static class TimeEmbedding
{
    /// <summary>Transformer-style sinusoidal features of t in [0, 1] (scaled by 1000, as DDPM-era models do), [B] -> [B, dim].</summary>
    public static Tensor Sinusoidal(Tensor t, int dim)
    {
        using var scope = NewDisposeScope();
        var half = dim / 2;
        var freqs = exp(arange(half, dtype: ScalarType.Float32, device: t.device) * (-Math.Log(10000.0) / half));
        var args = t.to_type(ScalarType.Float32).unsqueeze(1) * 1000f * freqs.unsqueeze(0);
        return cat([sin(args), cos(args)], 1).MoveToOuterDisposeScope();
    }
}
