using Islands.Diffusion.Modules;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Islands.Diffusion.Routing;

/// <summary>
/// The learned router r(x_t, t, c) -> K logits: an MLP over the flattened input with the time and class embeddings
/// added to its first hidden layer. Small on purpose: it runs once per sampling step for the whole batch.
/// </summary>
public sealed class RouterNet : Module<Tensor, Tensor, Tensor, Tensor>, IRouter
{
    private readonly int timeDim;
    private readonly Linear fc_in;
    private readonly Linear time_proj;
    private readonly Embedding class_embed;
    private readonly Linear fc_hidden;
    private readonly Linear fc_out;

    public int ExpertCount { get; }
    public long NullClass { get; }
    public bool LearnedDegradedCondition { get; }

    public RouterNet(long inputFeatures, int experts, int hidden = 256, int timeDim = 64, int classCount = 10, bool degradedCondition = false)
        : base(nameof(RouterNet))
    {
        ExpertCount = experts;
        NullClass = classCount;
        LearnedDegradedCondition = degradedCondition;
        this.timeDim = timeDim;
        fc_in = Linear(inputFeatures, hidden);
        time_proj = Linear(timeDim, hidden);
        class_embed = Embedding(classCount + 1 + (degradedCondition ? classCount : 0), hidden);
        fc_hidden = Linear(hidden, hidden);
        fc_out = Linear(hidden, experts);
        RegisterComponents();
    }

    /// <summary>The router a run's frozen config describes, for images of inputFeatures = C·H·W floats.</summary>
    public static RouterNet For(long inputFeatures, RouterConfig config) =>
        new(inputFeatures, config.ExpertCount, config.Hidden, config.TimeEmbeddingDim, config.ClassCount, config.DegradedCondition);

    public override Tensor forward(Tensor x, Tensor t, Tensor classes)
    {
        using var scope = NewDisposeScope();
        var h = fc_in.call(x.flatten(1).to_type(ScalarType.Float32))
                + time_proj.call(TimeEmbedding.Sinusoidal(t, timeDim))
                + class_embed.call(classes);
        h = functional.silu(h);
        h = functional.silu(fc_hidden.call(h));
        return fc_out.call(h).MoveToOuterDisposeScope();
    }

    public Tensor Posterior(Tensor x, Tensor t, Tensor classes)
    {
        using var scope = NewDisposeScope();
        var last = LearnedDegradedCondition ? 2 * NullClass : NullClass;
        if (classes.numel() > 0 && (classes.max().item<long>() > last || classes.min().item<long>() < 0))
            throw new ConfigException("class", $"the router knows classes 0..{NullClass - 1} (and {NullClass}, unconditional" +
                                               (LearnedDegradedCondition ? $"; {NullClass + 1}..{last}, degraded" : "") +
                                               $"); got {classes.min().item<long>()}..{classes.max().item<long>()}");
        using var _ = no_grad();
        return functional.softmax(call(x, t, classes), 1).to_type(x.dtype).MoveToOuterDisposeScope();
    }
}
