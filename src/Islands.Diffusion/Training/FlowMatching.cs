using static TorchSharp.torch;

namespace Islands.Diffusion.Training;

/// <summary>The rectified-flow path used by every expert: x_t = (1-t)·x0 + t·eps (t=0 data, t=1 noise), velocity eps - x0.</summary>
public static class FlowMatching
{
    public static Tensor Interpolate(Tensor x0, Tensor eps, Tensor t)
    {
        var tb = t.view(-1, 1, 1, 1).to_type(x0.dtype);
        return (1 - tb) * x0 + tb * eps;
    }

    public static Tensor TargetVelocity(Tensor x0, Tensor eps) => eps - x0;

    /// <summary>t ~ U(0,1) or logit-normal (sigmoid of a standard normal), which spends more steps on mid-range t.</summary>
    public static Tensor SampleTimes(long batch, string scheme, Generator generator, Device device)
    {
        return scheme switch
        {
            "uniform" => rand(batch, generator: generator, device: device),
            "logit-normal" => sigmoid(randn(batch, generator: generator, device: device)),
            _ => throw new ConfigException("timeSampling", $"'{scheme}' must be uniform or logit-normal"),
        };
    }
}
