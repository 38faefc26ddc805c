using TorchSharp;

namespace Islands.Diffusion.Modules;

/// <summary>
/// Anything that predicts the flow-matching velocity v(x_t, t, c). Class -1 (or the null index) means unconditional.
/// Experts of an ensemble may differ in architecture; this is all the ensemble needs of them.
/// </summary>
public interface IVelocityModel
{
    /// <summary>x: [B, C, H, W]; t: [B] in [0, 1]; classes: [B] int64, where NullClass means unconditional.</summary>
    torch.Tensor Velocity(torch.Tensor x, torch.Tensor t, torch.Tensor classes);

    long NullClass { get; }
}
