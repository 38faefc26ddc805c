using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace Islands.Diffusion.Metrics;

/// <summary>
/// A small CNN trained on the dataset's own train split. Its penultimate layer (128-d) is the feature space of FID/KID,
/// standing in for Inception features, which do not exist for 28x28 grey images.
/// </summary>
public sealed class FeatureClassifier : Module<Tensor, Tensor>
{
    public const int FeatureDim = 128;
    private readonly Conv2d conv1;
    private readonly Conv2d conv2;
    private readonly Conv2d conv3;
    private readonly Linear fc_features;
    private readonly Linear fc_logits;

    public FeatureClassifier(int channels, int height, int width, int classes) : base(nameof(FeatureClassifier))
    {
        conv1 = Conv2d(channels, 32, 3, padding: 1);
        conv2 = Conv2d(32, 64, 3, padding: 1);
        conv3 = Conv2d(64, 64, 3, padding: 1);
        fc_features = Linear(64 * (height / 4) * (width / 4), FeatureDim);
        fc_logits = Linear(FeatureDim, classes);
        RegisterComponents();
    }

    public Tensor Features(Tensor x)
    {
        using var scope = NewDisposeScope();
        var h = functional.max_pool2d(functional.relu(conv1.forward(x)), 2);
        h = functional.relu(conv2.forward(h));
        h = functional.max_pool2d(functional.relu(conv3.forward(h)), 2);
        return functional.relu(fc_features.forward(h.flatten(1))).MoveToOuterDisposeScope();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return fc_logits.forward(Features(x)).MoveToOuterDisposeScope();
    }
}
