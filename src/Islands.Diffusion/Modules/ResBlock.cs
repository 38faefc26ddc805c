using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Islands.Diffusion.Modules;

/// <summary>Leaf layers are invoked with call() so forward hooks (the FLOP counter) see them.
/// GroupNorm-SiLU-conv twice, with the time/class embedding added between, and a 1x1 skip when widths differ.</summary>
public sealed class ResBlock : Module<Tensor, Tensor, Tensor>
{
    private readonly GroupNorm32 norm1;
    private readonly PaddedConv2d conv1;
    private readonly Linear emb_proj;
    private readonly GroupNorm32 norm2;
    private readonly PaddedConv2d conv2;
    private readonly Module<Tensor, Tensor> skip;

    public ResBlock(long inChannels, long outChannels, long embDim, long groups) : base(nameof(ResBlock))
    {
        norm1 = new GroupNorm32(groups, inChannels);
        conv1 = new PaddedConv2d(inChannels, outChannels, 3, padding: 1);
        emb_proj = Linear(embDim, outChannels);
        norm2 = new GroupNorm32(groups, outChannels);
        conv2 = new PaddedConv2d(outChannels, outChannels, 3, padding: 1);
        skip = inChannels == outChannels ? Identity() : new PaddedConv2d(inChannels, outChannels, 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor emb)
    {
        using var scope = NewDisposeScope();
        var h = conv1.call(functional.silu(norm1.call(x)));
        h = h + emb_proj.call(emb).unsqueeze(-1).unsqueeze(-1);
        h = conv2.call(functional.silu(norm2.call(h)));
        return (h + skip.call(x)).MoveToOuterDisposeScope();
    }
}
