using Islands.Diffusion.Numerics;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Islands.Diffusion.Modules;

/// <summary>
/// A 2-D convolution with nn.Conv2d's parameters (weight [out, in, k, k], bias [out]; same names, same initialisation,
/// so checkpoints are unchanged) that can widen its channel counts to a multiple of <see cref="NumericsPolicy.ChannelBlock"/>
/// with zero weights. oneDNN stores activations in channel blocks of 8 or 16 and, on some CPUs (seen on AMD EPYC Zen 5),
/// its kernels read the padding of a partial block uninitialised: backward-data of a convolution with 1 output channel
/// returned garbage or NaN in fp32 and bf16, fp32 forward with 24 or 40 input channels and bf16 forward with 8 were
/// wrong too (see README "Numerics"). With the widening on, every block is full and the padded channels hold real zeros. The start-up self-test
/// decides whether it is needed.
/// </summary>
public sealed class PaddedConv2d : Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter bias;
    private readonly long stride;
    private readonly long padding;

    public long InChannels { get; }
    public long OutChannels { get; }
    public long KernelSize { get; }
    public long Stride => stride;
    public Tensor Weight => weight;

    public PaddedConv2d(long inChannels, long outChannels, long kernelSize, long stride = 1, long padding = 0) : base(nameof(PaddedConv2d))
    {
        InChannels = inChannels;
        OutChannels = outChannels;
        KernelSize = kernelSize;
        this.stride = stride;
        this.padding = padding;
        // Built through nn.Conv2d so the initialisation (and the random numbers it draws) is exactly Conv2d's.
        using (var template = Conv2d(inChannels, outChannels, kernelSize, stride: stride, padding: padding))
        using (no_grad())
        {
            weight = new Parameter(template.weight!.detach().clone());
            bias = new Parameter(template.bias!.detach().clone());
        }
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var policy = NumericsPolicy.Current;
        var channelsLast = policy.ChannelsLastNow;
        var block = policy.PadConvolutionChannels ? NumericsPolicy.ChannelBlock : 1;
        var outPadded = RoundUp(OutChannels, block);
        var inPadded = RoundUp(InChannels, block);
        if (outPadded == OutChannels && inPadded == InChannels)
        {
            if (!channelsLast) return functional.conv2d(x, weight, bias, [stride, stride], [padding, padding]);
            using var cl = NewDisposeScope();
            // libtorch computes in channels-last when the input is; the weights are reordered by oneDNN either way.
            return functional.conv2d(MemoryLayout.ChannelsLast(x), weight, bias, [stride, stride], [padding, padding]).MoveToOuterDisposeScope();
        }

        using var scope = NewDisposeScope();
        Tensor w = weight, b = bias, input = x;
        if (outPadded > OutChannels)
        {
            w = cat([w, zeros([outPadded - OutChannels, InChannels, KernelSize, KernelSize], w.dtype, w.device)], 0);
            b = cat([b, zeros([outPadded - OutChannels], b.dtype, b.device)], 0);
        }
        if (inPadded > InChannels)
        {
            w = cat([w, zeros([outPadded, inPadded - InChannels, KernelSize, KernelSize], w.dtype, w.device)], 1);
            input = cat([x, zeros([x.shape[0], inPadded - InChannels, x.shape[2], x.shape[3]], x.dtype, x.device)], 1);
        }
        if (channelsLast) input = MemoryLayout.ChannelsLast(input);
        var y = functional.conv2d(input, w, b, [stride, stride], [padding, padding]);
        if (outPadded > OutChannels) y = y.narrow(1, 0, OutChannels);
        return (channelsLast ? MemoryLayout.ChannelsLast(y) : y.contiguous()).MoveToOuterDisposeScope();
    }

    private static long RoundUp(long value, long block) => (value + block - 1) / block * block;
}
