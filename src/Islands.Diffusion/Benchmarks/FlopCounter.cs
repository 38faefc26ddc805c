using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Islands.Diffusion.Benchmarks;

/// <summary>
/// Counts the multiply-add FLOPs (2 per MAC) of every Conv2d, PaddedConv2d and Linear layer in one forward pass, with forward hooks.
/// A training step costs about 3x the forward pass (forward, plus gradients for inputs and for weights).
/// Normalisation, activations and element-wise ops are not counted: they are memory-bound and small.
/// </summary>
public static class FlopCounter
{
    public static long ForwardFlops(nn.Module model, Action run)
    {
        long total = 0;
        var removers = new List<Action>();
        foreach (var (_, module) in model.named_modules())
        {
            switch (module)
            {
                case Conv2d conv:
                    var convHook = conv.register_forward_hook((m, input, output) =>
                    {
                        var c = (Conv2d)m;
                        var weight = c.weight!;
                        var macsPerOutput = weight.shape[1] * weight.shape[2] * weight.shape[3];
                        total += 2 * macsPerOutput * output.numel();
                        return output;
                    });
                    removers.Add(() => convHook.remove());
                    break;
                case Modules.PaddedConv2d padded:
                    // Counts the convolution as declared; the zero channels it may add for oneDNN are not useful work.
                    var paddedHook = padded.register_forward_hook((m, input, output) =>
                    {
                        var c = (Modules.PaddedConv2d)m;
                        total += 2 * c.InChannels * c.KernelSize * c.KernelSize * output.numel();
                        return output;
                    });
                    removers.Add(() => paddedHook.remove());
                    break;
                case Linear linear:
                    var linearHook = linear.register_forward_hook((m, input, output) =>
                    {
                        total += 2 * ((Linear)m).weight!.shape[1] * output.numel();
                        return output;
                    });
                    removers.Add(() => linearHook.remove());
                    break;
            }
        }
        try
        {
            run();
        }
        finally
        {
            foreach (var remove in removers) remove();
        }
        return total;
    }
}
