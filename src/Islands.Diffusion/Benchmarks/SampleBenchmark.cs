using System.Diagnostics;
using Islands.Diffusion.Configs;
using Islands.Diffusion.Runtime;
using Islands.Diffusion.Sampling;
using static TorchSharp.torch;

namespace Islands.Diffusion.Benchmarks;

public sealed record SampleBenchmarkResult(int Count, int Steps, string Sampler, double Cfg, int EvaluationsPerImage, double Seconds,
    double ImagesPerSecond, double ForwardGflopPerImage, double AchievedGflops, double RssStartMb, double RssEndMb);

/// <summary>Sampling throughput of one expert (random weights: speed does not depend on them).</summary>
public static class SampleBenchmark
{
    public static SampleBenchmarkResult Run(ModelConfig model, int count, SamplerOptions options)
    {
        var rssStart = TorchSetup.ResidentBytes();
        using var unet = model.Build();
        unet.eval();
        var forward = TrainBenchmark.CountForwardFlopsPerImage(unet, model);
        var classes = Enumerable.Range(0, count).Select(i => (long)(i % Math.Max(1, model.ClassCount))).ToArray();
        FlowSampler.Sample(unet, Math.Min(count, 8), classes[..Math.Min(count, 8)], options with { Steps = 2 }, (model.ImageChannels, model.ImageSize, model.ImageSize)).Dispose();
        var watch = Stopwatch.StartNew();
        using var samples = FlowSampler.Sample(unet, count, classes, options, (model.ImageChannels, model.ImageSize, model.ImageSize));
        var seconds = watch.Elapsed.TotalSeconds;
        var nfe = options.EvaluationsPerImage(conditional: true);
        return new SampleBenchmarkResult(count, options.Steps, options.Method, options.Cfg, nfe, seconds, count / seconds, forward / 1e9,
            count * nfe * forward / seconds / 1e9, rssStart / 1048576.0, TorchSetup.ResidentBytes() / 1048576.0);
    }
}
