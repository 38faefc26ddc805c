using Islands.Diffusion.Configs;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Islands.Diffusion.Modules;

/// <summary>
/// Class-conditional UNet velocity network: sinusoidal time embedding plus a learned class embedding (index
/// ClassCount is the null class for classifier-free guidance), ResBlocks at each resolution with skip connections.
/// Field names are checkpoint keys: renaming one is a checkpoint format change.
/// </summary>
public sealed class UNet : Module<Tensor, Tensor, Tensor, Tensor>, IVelocityModel
{
    private readonly ModelConfig config;
    private readonly PaddedConv2d conv_in;
    private readonly Linear time_fc1;
    private readonly Linear time_fc2;
    private readonly Embedding class_embed;
    private readonly ModuleList<ResBlock> down_blocks;
    private readonly ModuleList<PaddedConv2d> downsamples;
    private readonly ResBlock mid_block;
    private readonly ModuleList<ResBlock> up_blocks;
    private readonly GroupNorm32 norm_out;
    private readonly PaddedConv2d conv_out;

    public ModelConfig Config => config;
    public long NullClass => config.ClassCount;

    /// <summary>The label of "degraded, class c" in a model of classCount classes that learned the degraded condition.</summary>
    public static long DegradedLabel(int classCount, long c) => classCount + 1 + c;

    public UNet(ModelConfig config) : base(nameof(UNet))
    {
        this.config = config;
        var errors = config.Validate().ToList();
        if (errors.Count > 0) throw new ConfigException("model", string.Join("; ", errors));
        var channels = config.Multipliers.Select(m => (long)config.BaseChannels * m).ToArray();
        long emb = config.TimeEmbeddingDim;
        long groups = config.GroupNormGroups;

        conv_in = new PaddedConv2d(config.ImageChannels, channels[0], 3, padding: 1);
        time_fc1 = Linear(emb, emb);
        time_fc2 = Linear(emb, emb);
        class_embed = Embedding(config.ConditionCount, emb);

        var down = new List<ResBlock>();
        var downs = new List<PaddedConv2d>();
        var current = channels[0];
        for (var level = 0; level < channels.Length; level++)
        {
            for (var b = 0; b < config.ResBlocksPerLevel; b++)
            {
                down.Add(new ResBlock(current, channels[level], emb, groups));
                current = channels[level];
            }
            if (level < channels.Length - 1) downs.Add(new PaddedConv2d(current, current, 3, stride: 2, padding: 1));
        }
        mid_block = new ResBlock(current, current, emb, groups);

        // One skip per level (the output of its last block); upsampling is nearest-neighbour and the next ResBlock's
        // convolution does the smoothing, which saves two full-resolution convolutions per image.
        var up = new List<ResBlock>();
        for (var level = channels.Length - 1; level >= 0; level--)
        {
            for (var b = 0; b < config.ResBlocksPerLevel; b++)
            {
                var skip = b == 0 ? channels[level] : 0;
                up.Add(new ResBlock(current + skip, channels[level], emb, groups));
                current = channels[level];
            }
        }
        down_blocks = new ModuleList<ResBlock>(down.ToArray());
        downsamples = new ModuleList<PaddedConv2d>(downs.ToArray());
        up_blocks = new ModuleList<ResBlock>(up.ToArray());
        norm_out = new GroupNorm32(groups, current);
        conv_out = new PaddedConv2d(current, config.ImageChannels, 3, padding: 1);
        RegisterComponents();
    }

    public Tensor Velocity(Tensor x, Tensor t, Tensor classes) => call(x, t, classes);

    public override Tensor forward(Tensor x, Tensor t, Tensor classes)
    {
        using var scope = NewDisposeScope();
        var emb = time_fc2.call(functional.silu(time_fc1.call(TimeEmbedding.Sinusoidal(t, config.TimeEmbeddingDim).to_type(x.dtype))))
                  + class_embed.call(classes).to_type(x.dtype);
        var h = conv_in.call(x);
        var skips = new List<Tensor>();
        var blockIndex = 0;
        var levels = config.Multipliers.Length;
        for (var level = 0; level < levels; level++)
        {
            for (var b = 0; b < config.ResBlocksPerLevel; b++) h = down_blocks[blockIndex++].forward(h, emb);
            skips.Add(h);
            if (level < levels - 1) h = downsamples[level].call(h);
        }
        h = mid_block.forward(h, emb);
        blockIndex = 0;
        for (var level = levels - 1; level >= 0; level--)
        {
            for (var b = 0; b < config.ResBlocksPerLevel; b++)
            {
                var input = b == 0 ? cat([h, skips[level]], 1) : h;
                h = up_blocks[blockIndex++].forward(input, emb);
            }
            if (level > 0) h = functional.interpolate(h, scale_factor: [2.0, 2.0], mode: InterpolationMode.Nearest);
        }
        return conv_out.call(functional.silu(norm_out.call(h))).MoveToOuterDisposeScope();
    }

    public long ParameterCount() => parameters().Sum(p => p.numel());
}
