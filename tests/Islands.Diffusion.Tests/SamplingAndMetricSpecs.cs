using Islands.Diffusion.Configs;
using Islands.Diffusion.Data;
using Islands.Diffusion.Metrics;
using Islands.Diffusion.Runtime;
using Islands.Diffusion.Sampling;
using static TorchSharp.torch;

namespace Islands.Diffusion.Tests;

public sealed class SamplingAndMetricSpecs
{
    [Theory]
    [InlineData("euler", 1.0)]
    [InlineData("heun", 2.0)]
    public void Should_sample_deterministically_for_a_seed(string method, double cfg)
    {
        TorchSetup.Initialise(2);
        random.manual_seed(1);
        using var model = new ModelConfig(BaseChannels: 8, ClassCount: 3).Build();
        model.eval();
        var options = new SamplerOptions(Steps: 3, Method: method, Cfg: cfg, Seed: 42, BatchSize: 4);
        long[] classes = [0, 1, 2, 0, 1, 2];
        using var a = FlowSampler.Sample(model, 6, classes, options, (1, 28, 28));
        using var b = FlowSampler.Sample(model, 6, classes, options, (1, 28, 28));
        using var c = FlowSampler.Sample(model, 6, classes, options with { Seed = 43 }, (1, 28, 28));
        Assert.True(a.eq(b).all().item<bool>());
        Assert.False(a.eq(c).all().item<bool>());
        Assert.Equal(method == "heun" ? 5 * (cfg == 1.0 ? 1 : 2) : 3, options.EvaluationsPerImage(true));
    }

    [Fact]
    public void Should_give_zero_frechet_distance_for_identical_gaussians_and_the_mean_gap_for_shifted_ones()
    {
        TorchSetup.Initialise(2);
        random.manual_seed(5);
        var x = randn(4000, 8);
        var g = DistributionDistances.Fit(x);
        Assert.Equal(0, DistributionDistances.Frechet(g, g), 6);
        var shifted = DistributionDistances.Fit(x + 2);
        Assert.Equal(8 * 4.0, DistributionDistances.Frechet(g, shifted), 3);
    }

    [Fact]
    public void Should_score_real_images_far_better_than_noise()
    {
        TorchSetup.Initialise(2);
        var data = CanonicalDataset.Load(TestData.FashionMnistDirectory);
        using var evaluator = Evaluator.ForDataset(data, epochs: 1, trainLimit: 6000);
        Assert.True(evaluator.Info.TestAccuracy > 0.6, $"quick evaluator accuracy {evaluator.Info.TestAccuracy}");
        using var train = ImageTensors.ToTensor(data.Train.Subset(Enumerable.Range(0, 2000).ToArray()));
        using var noise = rand(2000, 1, 28, 28) * 2 - 1;
        var real = evaluator.Score(train);
        var fake = evaluator.Score(noise);
        Assert.True(real.Fid * 20 < fake.Fid, $"train-vs-test FID {real.Fid:F2} should be far below noise FID {fake.Fid:F2}");
        Assert.True(real.Kid < fake.Kid / 20, $"KID {real.Kid} vs noise {fake.Kid}");
    }
}
