using Islands.Diffusion.Configs;
using Islands.Diffusion.Routing;
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

    [Fact]
    public void A_router_with_the_degraded_condition_learns_degraded_copies_and_is_asked_degraded_labels_as_its_own()
    {
        TorchSetup.Initialise(2);
        // Partition 0 is bright on the left, partition 1 on the right; labels are random, so only the image tells them apart.
        using var generator = new Generator(3);
        const int n = 512;
        var partition = randint(0, 2, [n], generator: generator);
        var column = arange(16).view(1, 1, 1, 16);
        var left = (column < 8).to_type(ScalarType.Float32);
        var bright = where(partition.view(-1, 1, 1, 1).eq(0), left, 1 - left);
        var images = (bright * 1.4f - 0.7f + 0.2f * randn([n, 1, 16, 16], generator: generator)).clamp(-1, 1);
        var labels = randint(0, 10, [n], generator: generator);
        var assignments = partition.data<long>().Select(p => (int)p).ToArray();
        var config = new RouterConfig(DataDirectory: "(in memory)", PartitionsFile: "(in memory)", ExpertCount: 2, Hidden: 32, Steps: 150,
            BatchSize: 64, LearningRate: 3e-3, HeldOutFraction: 0.25, DegradedCondition: true, DegradedFraction: 0.5);
        using var trainer = new RouterTrainer(config, images, labels, assignments);
        var first = trainer.Train(10);
        var last = trainer.Train(140);
        Assert.True(float.IsFinite(first) && float.IsFinite(last) && last < first * 0.7f, $"loss {first} -> {last}");
        Assert.True(trainer.Router.LearnedDegradedCondition);

        // Degraded held-out copies, asked as "degraded, class c", are routed to their image's partition at small t.
        var degraded = trainer.EvaluateDegraded(bands: 5);
        Assert.True(degraded[0].Accuracy > 0.9, $"accuracy on degraded copies at t < 0.2: {degraded[0].Accuracy:P1}");

        // Experts' "degraded, class 3" (10 + 1 + 3) goes to this router as its own degraded class 3, and to a router
        // without the condition as class 3; the null class (-1) and plain classes pass unchanged.
        var asked = tensor(new long[] { 14, 3, -1 });
        Assert.Equal(new long[] { 14, 3, -1 }, RoutedStep.RouterClasses(asked, 10, trainer.Router).data<long>().ToArray());
        using var plain = new RouterNet(256, 2, 32, classCount: 10);
        Assert.Equal(new long[] { 3, 3, -1 }, RoutedStep.RouterClasses(asked, 10, plain).data<long>().ToArray());
        Assert.Throws<ConfigException>(() => plain.Posterior(images.narrow(0, 0, 2), full(2, 0.5f), tensor(new long[] { 14, 3 })));

        // The degraded class has an embedding of its own: on an ambiguous (flat) image the two labels route differently.
        using var _ = no_grad();
        var flat = zeros([1, 1, 16, 16]);
        var p = trainer.Router.Posterior(cat([flat, flat]), full(2, 0.5f), tensor(new long[] { 14, 3 }));
        Assert.True(p.isfinite().all().item<bool>());
        Assert.True((p[0] - p[1]).abs().max().item<float>() > 0, "degraded class 3 and class 3 share an embedding");
    }
}
