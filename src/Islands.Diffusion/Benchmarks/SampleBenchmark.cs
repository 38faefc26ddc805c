using System.Diagnostics;
using Islands.Diffusion.Configs;
using Islands.Diffusion.Runtime;
using Islands.Diffusion.Sampling;
using static TorchSharp.torch;

namespace Islands.Diffusion.Benchmarks;

public sealed record SampleBenchmarkResult(string Precision, int Count, int Steps, string Sampler, double Cfg, int EvaluationsPerImage,
    double Seconds, double ImagesPerSecond, double ForwardGflopPerImage, double AchievedGflops, double RssStartMb, double RssEndMb);

/// <summary>Sampling throughput of one expert (random weights: speed does not depend on them).</summary>
public static class SampleBenchmark
{
    public static SampleBenchmarkResult Run(ModelConfig model, int count, SamplerOptions options, string precision = "fp32", int rounds = 3)
    {
        var rssStart = TorchSetup.ResidentBytes();
        var unet = model.Build();
        unet.eval();
        var forward = TrainBenchmark.CountForwardFlopsPerImage(unet, model);
        using var owner = unet;
        var velocity = Modules.Bfloat16Velocity.ForPrecision(unet, precision);
        var classes = Enumerable.Range(0, count).Select(i => (long)(i % Math.Max(1, model.ClassCount))).ToArray();
        // Warm-up at the measured batch size: oneDNN creates its kernels for each new shape, once.
        FlowSampler.Sample(velocity, count, classes, options with { Steps = 2 }, model.Shape).Dispose();
        // The median of several timed runs: one run on a shared 2-core VM varies by 20-30 %.
        var times = new List<double>();
        for (var round = 0; round < Math.Max(1, rounds); round++)
        {
            var watch = Stopwatch.StartNew();
            FlowSampler.Sample(velocity, count, classes, options, model.Shape).Dispose();
            times.Add(watch.Elapsed.TotalSeconds);
        }
        var seconds = times.Order().ElementAt(times.Count / 2);
        var nfe = options.EvaluationsPerImage(conditional: true);
        return new SampleBenchmarkResult(precision, count, options.Steps, options.Method, options.Cfg, nfe, seconds, count / seconds, forward / 1e9,
            count * nfe * forward / seconds / 1e9, rssStart / 1048576.0, TorchSetup.ResidentBytes() / 1048576.0);
    }
}

public sealed record PathSampleRow(string Path, string Precision, IReadOnlyList<double> ImagesPerSecond)
{
    public double Median => ImagesPerSecond.Order().ElementAt(ImagesPerSecond.Count / 2);
}

/// <summary>Sampling throughput of one expert on several kernel paths, in alternating rounds (A B A B ...) on the same model and seed.</summary>
public static class PathSampleBenchmark
{
    public static IReadOnlyList<PathSampleRow> Run(ModelConfig model, int count, SamplerOptions options, string precision,
        IReadOnlyList<Numerics.NumericsPolicy> paths, int rounds)
    {
        using var unet = model.Build();
        unet.eval();
        var velocity = Modules.Bfloat16Velocity.ForPrecision(unet, precision);
        var classes = Enumerable.Range(0, count).Select(i => (long)(i % Math.Max(1, model.ClassCount))).ToArray();
        var shape = model.Shape;
        var results = paths.Select(_ => new List<double>()).ToArray();
        for (var round = 0; round <= rounds; round++)
        {
            for (var i = 0; i < paths.Count; i++)
            {
                using var trial = Numerics.NumericsPolicy.Trial(paths[i]);
                // Round 0 warms each path up at the measured batch size (oneDNN creates its kernels for each new shape).
                var watch = Stopwatch.StartNew();
                FlowSampler.Sample(velocity, count, classes, round == 0 ? options with { Steps = 2 } : options, shape).Dispose();
                if (round > 0) results[i].Add(count / watch.Elapsed.TotalSeconds);
            }
        }
        return paths.Select((p, i) => new PathSampleRow(p.Name, precision, results[i])).ToList();
    }
}

public sealed record EnsembleBenchmarkRow(string Strategy, double Seconds, double ImagesPerSecond, double CostRelativeToOneExpert,
    double ExpertEvaluationsPerImage, double RouterShareOfCost);

/// <summary>Routed sampling at K experts against one expert, measured in one run on the same batch and seed.</summary>
public static class EnsembleBenchmark
{
    public static IReadOnlyList<EnsembleBenchmarkRow> Run(ModelConfig model, int experts, int count, SamplerOptions options,
        IReadOnlyList<string> strategies)
    {
        var shape = model.Shape;
        var nets = Enumerable.Range(0, experts).Select(_ => model.Build()).ToList();
        foreach (var n in nets) n.eval();
        using var router = new Routing.RouterNet(model.ImageChannels * model.Height * model.Width, experts, classCount: model.ClassCount);
        router.eval();
        var classes = Enumerable.Range(0, count).Select(i => (long)(i % Math.Max(1, model.ClassCount))).ToArray();
        var expertFlops = TrainBenchmark.CountForwardFlopsPerImage(nets[0], model);
        using var probe = randn(1, model.ImageChannels, model.Height, model.Width);
        var routerFlops = FlopCounter.ForwardFlops(router, () => router.Posterior(probe, full(1, 0.5f), zeros(1, dtype: ScalarType.Int64)).Dispose());
        try
        {
            FlowSampler.Sample(nets[0], Math.Min(8, count), classes[..Math.Min(8, count)], options with { Steps = 2 }, shape).Dispose();
            var watch = Stopwatch.StartNew();
            FlowSampler.Sample(nets[0], count, classes, options, shape).Dispose();
            var single = watch.Elapsed.TotalSeconds;
            var rows = new List<EnsembleBenchmarkRow> { new("one expert", single, count / single, 1.0, options.EvaluationsPerImage(true), 0) };
            foreach (var name in strategies)
            {
                var ensemble = new Routing.ExpertEnsemble(nets, router, Routing.RoutingStrategy.Parse(name), seed: options.Seed);
                watch.Restart();
                FlowSampler.Sample(ensemble.Field(options.Cfg), count, classes, options, shape).Dispose();
                var seconds = watch.Elapsed.TotalSeconds;
                var expertCost = ensemble.ExpertRowEvaluations.Sum() * expertFlops;
                var routerCost = ensemble.RouterRowEvaluations * routerFlops;
                rows.Add(new EnsembleBenchmarkRow(name, seconds, count / seconds, seconds / single,
                    ensemble.ExpertRowEvaluations.Sum() / (double)count, routerCost / (routerCost + expertCost)));
            }
            return rows;
        }
        finally
        {
            foreach (var n in nets) n.Dispose();
        }
    }
}
