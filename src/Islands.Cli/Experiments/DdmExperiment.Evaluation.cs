using System.Diagnostics;
using System.Globalization;
using Islands.Diffusion.Data;
using Islands.Diffusion.Imaging;
using Islands.Diffusion.Modules;
using Islands.Diffusion.Partitioning;
using Islands.Diffusion.Routing;
using Islands.Diffusion.Sampling;
using Islands.Diffusion.Training;
using static TorchSharp.torch;

namespace Islands.Cli.Experiments;

public sealed partial class DdmExperiment
{
    /// <summary>The classes to generate (and, for the oracle, each image's true partition): the labels of N training images drawn with the
    /// seed.</summary>
    private static int[] EvaluationImages(StageContext c, int seed)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, c.Plan.Scale.Samples).Select(_ => random.Next(c.Data.Train.Count))];
    }

    private void EvaluateMonolith(StageContext c, int seed, long step)
    {
        var indices = EvaluationImages(c, seed);
        var classes = indices.Select(i => (long)c.Data.Train.Labels[i]).ToArray();
        var run = new RunDirectory(MonolithRun(seed));
        using var unet = run.LoadModelAt(step);
        var options = SamplerOptionsFor(c.Plan, seed);
        var watch = Stopwatch.StartNew();
        using var samples = FlowSampler.Sample(Bfloat16Velocity.ForPrecision(unet, c.Plan.Scale.Precision), classes.Length, classes,
            options, c.Shape);
        var seconds = watch.Elapsed.TotalSeconds;
        var flops = step * (double)c.Plan.Scale.MonolithBatch * TrainFlopsPerImage(c.Plan);
        Score(c, seed, "monolith", "monolith", step, flops, samples, seconds, options.Steps,
            c.Plan.Calibration.ExpertForwardFlops * options.Steps / 1e9);
    }

    /// <param name="method">top1, top2, full, oracle (each image's true partition), or top1gaussian (the training-free router).</param>
    private void EvaluateEnsemble(StageContext c, int seed, string arm, string partitionMethod, int k, string method, long step)
    {
        var partitionsPath = PartitionsPath(partitionMethod, k, seed);
        var partitions = PartitionFile.Load(partitionsPath);
        var indices = EvaluationImages(c, seed);
        var classes = indices.Select(i => (long)c.Data.Train.Labels[i]).ToArray();
        var oracle = method == "oracle" ? indices.Select(i => (long)partitions.Assignments[i]).ToArray() : null;
        var isFailure = arm.StartsWith("failure", StringComparison.Ordinal);
        var expertArm = isFailure ? ArmName("kmeans", k) : arm;
        var runs = Enumerable.Range(0, k).Select(e => isFailure && e == 0 ? FailureRun(seed) : ExpertRun(seed, expertArm, e)).ToList();
        var experts = new List<UNet>();
        try
        {
            foreach (var r in runs) experts.Add(new RunDirectory(r).LoadModelAt(step));
            var configs = runs.Select(r => new RunDirectory(r).LoadConfig()).ToList();
            var routerSpec = method == "top1gaussian" ? "gaussian" : RouterRunDirectory(seed, expertArm);
            var strategy = method switch
            {
                "top1" or "top1gaussian" => RoutingStrategy.Top1,
                "top2" => RoutingStrategy.Parse("top2"),
                "full" => RoutingStrategy.Full,
                "oracle" => new RoutingStrategy("oracle", OracleExpert: 0),
                _ => throw new ArgumentOutOfRangeException(nameof(method), method, "unknown method"),
            };
            var options = SamplerOptionsFor(c.Plan, seed);
            var watch = Stopwatch.StartNew();
            var result = EnsembleSampling.Run(experts, configs, routerSpec, strategy, [], false, classes.Length, classes, options, c.Shape, null,
                c.Plan.Scale.Precision, oracle);
            var seconds = watch.Elapsed.TotalSeconds;
            using var samples = result.Samples;
            var expertFlops = step * (double)c.Plan.Scale.MonolithBatch * TrainFlopsPerImage(c.Plan);
            // The router is trained once, before sampling: all of it counts at every point along training.
            var routerFlops = method == "top1gaussian" ? 0
                : Stages.TryGet<RouterOutcome>($"router-s{seed}-{expertArm}", out var router) ? router.Flops : 0;
            var gflopPerImage = (result.Costs.ExpertGflopPerImage.Zip(result.Costs.ExpertEvaluations, (gflop, rows) => gflop * rows).Sum()
                + result.Costs.RouterGflopPerImage * result.Costs.RouterEvaluations) / classes.Length;
            Score(c, seed, arm, method, step, expertFlops + routerFlops, samples, seconds, result.Costs.EvaluationsPerImage, gflopPerImage);
        }
        finally
        {
            foreach (var e in experts) e.Dispose();
        }
    }

    private static SamplerOptions SamplerOptionsFor(DdmPlan plan, int seed)
        => new(Steps: plan.Scale.SamplingSteps, Method: "euler", Cfg: 1.0, Seed: seed);

    private void Score(StageContext c, int seed, string arm, string method, long step, double trainFlops, Tensor samples, double seconds,
        double evaluationsPerImage, double gflopPerImage)
    {
        var report = c.Evaluator.Score(samples);
        string? grid = null;
        if (step == c.Plan.EvalSteps[^1])
        {
            var shown = (int)Math.Min(c.Plan.Scale.GridImages, samples.shape[0]);
            using var head = samples.narrow(0, 0, shown);
            grid = Path.Combine(SeedDirectory(seed), "grids", $"{arm}-{method}.png");
            Directory.CreateDirectory(Path.GetDirectoryName(grid)!);
            ImageGrid.SavePng(grid, ImageTensors.ToBytes(head), shown, (int)c.Shape.C, (int)c.Shape.H, (int)c.Shape.W, columns: 8);
        }
        log(string.Create(CultureInfo.InvariantCulture, $"seed {seed} {arm} {method} at step {step}: FID {report.Fid:F2}, KID {report.Kid:F4} " +
            $"({report.Count} samples, {seconds:F0} s)"));
        Stages.Put($"eval-s{seed}-{arm}-{method}-{step:D9}",
            new EvaluationOutcome(seed, arm, method, step, trainFlops, report.Count, c.Plan.Scale.SamplingSteps, report.Fid, report.Kid, seconds,
            evaluationsPerImage, gflopPerImage, grid is null ? null : Path.GetRelativePath(Output, grid)));
    }
}
