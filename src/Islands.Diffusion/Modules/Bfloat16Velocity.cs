using TorchSharp;
using static TorchSharp.torch;

namespace Islands.Diffusion.Modules;

/// <summary>
/// Runs a model in bfloat16 for sampling: the ODE state stays float32, each evaluation casts its input to bf16 and the
/// velocity back to float32. Converts (and then owns) the given model.
/// </summary>
public sealed class Bfloat16Velocity : IVelocityModel, IDisposable
{
    private readonly UNet model;

    public Bfloat16Velocity(UNet model)
    {
        this.model = model;
        model.to(ScalarType.BFloat16);
        model.eval();
    }

    public long NullClass => model.NullClass;

    public Tensor Velocity(Tensor x, Tensor t, Tensor classes)
    {
        using var scope = NewDisposeScope();
        return model.call(x.to_type(ScalarType.BFloat16), t, classes).to_type(x.dtype).MoveToOuterDisposeScope();
    }

    public void Dispose() => model.Dispose();

    /// <summary>The model for a --precision option: itself for fp32, a bf16 wrapper for bf16 (fp32 where the self-test distrusts bf16).</summary>
    public static IVelocityModel ForPrecision(UNet model, string precision) => Numerics.NumericsPolicy.EffectivePrecision(precision) switch
    {
        "fp32" => model,
        "bf16" => new Bfloat16Velocity(model),
        _ => throw new ConfigException("precision", $"'{precision}' must be fp32 or bf16"),
    };
}
