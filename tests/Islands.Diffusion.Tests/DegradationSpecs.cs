using Islands.Diffusion.Configs;
using Islands.Diffusion.Runtime;
using Islands.Diffusion.Training;
using static TorchSharp.torch;

namespace Islands.Diffusion.Tests;

/// <summary>The degraded condition: its corruptions, and an expert that learns it beside the ordinary classes.</summary>
public sealed class DegradationSpecs
{
    [Fact]
    public void The_corruptions_stay_in_range_change_every_image_and_repeat_for_the_same_generator()
    {
        TorchSetup.Initialise(2);
        using var source = new Generator(1);
        var images = (rand([32, 3, 24, 32], generator: source) * 2 - 1).clamp(-1, 1);
        using var a = new Generator(7);
        using var b = new Generator(7);
        var first = Degradations.Apply(images, a);
        var again = Degradations.Apply(images, b);
        Assert.True(first.isfinite().all().item<bool>());
        Assert.True(first.abs().max().item<float>() <= 1f);
        Assert.Equal(0f, (first - again).abs().max().item<float>());
        var changed = (first - images).abs().flatten(1).amax(1);
        Assert.True((changed > 0.01).all().item<bool>(), "every image is corrupted by at least one of the five");
        // Blur, pixelation and contrast loss all lower the images' high frequencies on average: noisy uniform input has many.
        Assert.True(Metrics.ImageStatistics.LaplacianVariance(first) < Metrics.ImageStatistics.LaplacianVariance(images));
    }

    [Fact]
    public void An_expert_with_the_degraded_condition_trains_on_both_kinds_of_label_and_evaluates_a_degraded_class()
    {
        TorchSetup.Initialise(2);
        var model = new ModelConfig(BaseChannels: 8, ChannelMultipliers: [1, 2], DegradedCondition: true);
        Assert.Equal(21, model.ConditionCount);
        Assert.Equal(11 + 3, model.DegradedClass(3));
        var config = new TrainConfig(Job: "monolith", DataDirectory: "(in memory)", Model: model, Steps: 6, BatchSize: 8, WarmupSteps: 1,
            CheckpointEvery: 6, DegradedFraction: 0.5);
        using var generator = new Generator(2);
        var images = (rand([64, 1, 28, 28], generator: generator) * 2 - 1);
        var labels = randint(0, 10, [64], generator: generator);
        using var trainer = new ExpertTrainer(config, images, labels, CPU, null);
        var loss = trainer.Train(6);
        Assert.True(float.IsFinite(loss) && loss > 0, $"loss {loss}");
        using var _ = no_grad();
        var v = trainer.Model.Velocity(randn([2, 1, 28, 28]), full(2, 0.5f), tensor(new long[] { model.DegradedClass(3), 3 }));
        Assert.True(v.isfinite().all().item<bool>());
        Assert.True((v[0] - v[1]).abs().max().item<float>() > 0, "the degraded class has an embedding of its own");
    }
}
