using System.Diagnostics;
using System.Globalization;
using Islands.Diffusion;
using Islands.Diffusion.Benchmarks;
using Islands.Diffusion.Configs;
using Islands.Diffusion.Data;
using Islands.Diffusion.IO;
using Islands.Diffusion.Metrics;
using Islands.Diffusion.Modules;
using Islands.Diffusion.Partitioning;
using Islands.Diffusion.Routing;
using Islands.Diffusion.Sampling;
using Islands.Diffusion.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Islands.Cli.Experiments;

/// <summary>
/// <c>islands experiment ddm</c>: the monolith against K isolated experts at equal training compute, scored along
/// training with every routing method, plus the ablations and the failure run. Every stage writes its outcome to
/// stages/ when it finishes and every training run checkpoints, so an interrupted experiment resumes where it stopped.
/// </summary>
public sealed partial class DdmExperiment(string output, Action<string> log)
{
    public const string PlanFile = "plan.json";
    public string Output { get; } = Path.GetFullPath(output);
    public DdmStageStore Stages { get; } = new(Path.GetFullPath(output));

    private readonly Stopwatch clock = Stopwatch.StartNew();

    /// <summary>Loads the frozen plan, or imports the data, partitions it, measures this machine and plans the steps.</summary>
    public DdmPlan Prepare(DdmExperimentOptions options, string command)
    {
        ConfigException.ThrowFirst(options.Validate());
        var planPath = Path.Combine(Output, PlanFile);
        if (File.Exists(planPath))
        {
            var frozen = Json.Read<DdmPlan>(planPath);
            if (frozen.SchemaVersion != DdmPlan.CurrentSchemaVersion)
                throw new ConfigException("--out", $"{planPath} has schemaVersion {frozen.SchemaVersion}; this islands writes " +
                    $"{DdmPlan.CurrentSchemaVersion}: use a new --out");
            var differences = frozen.Options.DifferencesForResume(options with { DataDirectory = Path.GetFullPath(options.DataDirectory) }).ToList();
            if (differences.Count > 0)
                throw new ConfigException("--out", $"{Output} holds an experiment with other options: {string.Join(", ", differences)}; rerun with " +
                    "the same options to resume, or use a new --out");
            log($"resuming the experiment planned at {frozen.Created:u} ({frozen.Steps} steps per run)");
            return frozen;
        }
        options = options with { DataDirectory = Path.GetFullPath(options.DataDirectory) };
        var scale = DdmScale.For(options.Quick);
        var data = DataPreparation.EnsureDataset(options.DataDirectory, log);
        Directory.CreateDirectory(Output);
        var ks = scale.KsWith(options.K);
        for (var seed = 0; seed < options.Seeds; seed++)
        {
            foreach (var k in ks) EnsurePartitions(data, scale, "kmeans", k, seed);
            EnsurePartitions(data, scale, "random", options.K, seed);
        }
        var calibration = Calibrate(scale, options.K, data.Manifest);
        var left = options.BudgetMinutes * 60 - clock.Elapsed.TotalSeconds;
        var (steps, estimate) = DdmPlan.Solve(options, scale, calibration, left);
        var plan = new DdmPlan(DdmPlan.CurrentSchemaVersion, options, scale, steps, ks, calibration, (estimate + clock.Elapsed.TotalSeconds) / 60,
            command, $"{Environment.ProcessorCount} cores, {calibration.Threads} libtorch threads, " +
            $"{System.Runtime.InteropServices.RuntimeInformation.OSDescription}", DateTimeOffset.UtcNow);
        Json.WriteAtomic(planPath, plan);
        log(string.Create(CultureInfo.InvariantCulture,
            $"plan: {steps} steps per run (monolith batch {scale.MonolithBatch}, experts {scale.MonolithBatch}/K), {options.Seeds} seeds, K in " +
            $"{{{string.Join(", ", ks)}}}, {scale.Samples} samples per score; about {plan.EstimatedMinutes:F0} minutes"));
        return plan;
    }

    /// <summary>Runs every stage not yet finished. progress(doneSeconds, totalSeconds, status) in estimated seconds.</summary>
    public void Run(DdmPlan plan, Action<double, double, string> progress, CancellationToken cancel)
    {
        var stages = PlanStages(plan);
        var total = stages.Sum(s => s.EstimatedSeconds);
        var done = 0.0;
        var data = CanonicalDataset.Load(plan.Options.DataDirectory);
        using var evaluator = Evaluator.ForDataset(data, plan.Scale.EvaluatorEpochs, 0, log, plan.Scale.EvaluatorImages);
        var context = new StageContext(plan, data, evaluator, cancel);
        foreach (var stage in stages)
        {
            cancel.ThrowIfCancellationRequested();
            if (!File.Exists(Path.Combine(Stages.Root, stage.Name + ".json")))
            {
                progress(done, total, stage.Name);
                var start = done;
                stage.Run(context, fraction => progress(start + fraction * stage.EstimatedSeconds, total, stage.Name));
                cancel.ThrowIfCancellationRequested();
            }
            done += stage.EstimatedSeconds;
            progress(done, total, stage.Name);
        }
    }

    private sealed record StageContext(DdmPlan Plan, CanonicalDataset Data, Evaluator Evaluator, CancellationToken Cancel)
    {
        /// <summary>The dataset's C × H × W, which every run of the experiment trains and samples at.</summary>
        public (long C, long H, long W) Shape => (Data.Manifest.Channels, Data.Manifest.Height, Data.Manifest.Width);
    }

    private sealed record Stage(string Name, double EstimatedSeconds, Action<StageContext, Action<double>> Run);

    public string SeedDirectory(int seed) => Path.Combine(Output, $"seed-{seed}");
    public string PartitionsPath(string method, int k, int seed) => Path.Combine(SeedDirectory(seed), $"partitions-{method}-k{k}.json");
    public static string ArmName(string method, int k) => $"{(method == "kmeans" ? "ddm" : "random")}-k{k}";
    public string ExpertRun(int seed, string arm, int expert) => Path.Combine(SeedDirectory(seed), arm, $"expert-{expert}");
    public string RouterRunDirectory(int seed, string arm) => Path.Combine(SeedDirectory(seed), arm, "router");
    public string MonolithRun(int seed) => Path.Combine(SeedDirectory(seed), "monolith");
    public string FailureRun(int seed) => Path.Combine(SeedDirectory(seed), "failure", "expert-0");

    private void EnsurePartitions(CanonicalDataset data, DdmScale scale, string method, int k, int seed)
    {
        var path = PartitionsPath(method, k, seed);
        if (File.Exists(path))
        {
            PartitionFile.Load(path);
            return;
        }
        log($"seed {seed}: partitioning {data.Train.Count} images into K={k} ({method})");
        Directory.CreateDirectory(SeedDirectory(seed));
        var options = new PartitionOptions(K: k, FineClusters: Math.Min(scale.FineClusters, data.Train.Count / 4), Seed: seed, Method: method);
        Partitioner.Partition(data.Train, data.Manifest.Classes, options, data.Directory).Save(path);
    }

    private DdmCalibration Calibrate(DdmScale scale, int k, DatasetManifest manifest)
    {
        var shape = ((long)manifest.Channels, (long)manifest.Height, (long)manifest.Width);
        var model = new ModelConfig(BaseChannels: scale.BaseChannels).ForImages(manifest.Channels, manifest.Height, manifest.Width);
        var rates = new Dictionary<int, double>();
        foreach (var batch in scale.KsWith(k).Append(1).Select(kk => scale.MonolithBatch / kk).Distinct().Order())
        {
            var result = TrainBenchmark.Run(model, batch, steps: Math.Max(3, 256 / batch), warmup: 2, scale.Precision, peak: 1);
            rates[batch] = result.ImagesPerSecond;
            log(string.Create(CultureInfo.InvariantCulture, $"calibration: training at batch {batch}: {result.ImagesPerSecond:F0} images/s"));
        }
        using var unet = model.Build();
        unet.eval();
        var forward = TrainBenchmark.CountForwardFlopsPerImage(unet, model);
        var velocity = Bfloat16Velocity.ForPrecision(unet, scale.Precision);
        var count = Math.Min(256, scale.Samples);
        FlowSampler.Sample(velocity, count, null, new SamplerOptions(Steps: 1), shape).Dispose();
        var watch = Stopwatch.StartNew();
        FlowSampler.Sample(velocity, count, null, new SamplerOptions(Steps: 2), shape).Dispose();
        var sampleRows = 2.0 * count / watch.Elapsed.TotalSeconds;
        log(string.Create(CultureInfo.InvariantCulture, $"calibration: sampling {sampleRows:F0} network rows/s"));
        using var router = new RouterNet(manifest.ImageBytes, k, classCount: manifest.Classes.Count);
        using var probe = randn(1, manifest.Channels, manifest.Height, manifest.Width);
        var routerFlops = FlopCounter.ForwardFlops(router, () => router.Posterior(probe, full(1, 0.5f), zeros(1, dtype: ScalarType.Int64)).Dispose());
        var routerRate = RouterStepsPerSecond(router, scale.RouterBatch, manifest);
        return new DdmCalibration(rates, sampleRows, routerRate, forward, routerFlops, get_num_threads());
    }

    private static double RouterStepsPerSecond(RouterNet router, int batch, DatasetManifest manifest)
    {
        using var optimizer = optim.AdamW(router.parameters());
        var watch = new Stopwatch();
        for (var i = 0; i < 12; i++)
        {
            if (i == 2) watch.Start();
            using var scope = NewDisposeScope();
            var x = randn(batch, manifest.Channels, manifest.Height, manifest.Width);
            var logits = router.call(x, rand(batch), randint(0, manifest.Classes.Count, [batch]));
            var loss = nn.functional.cross_entropy(logits, randint(0, router.ExpertCount, [batch]));
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
        }
        return 10 / watch.Elapsed.TotalSeconds;
    }

    /// <summary>A run's config, at the dataset's image shape (as the train commands the failure run uses freeze it).</summary>
    private static TrainConfig ConfigFor(StageContext c, int seed, string? partitions, int? expert, int batch) => new TrainConfig(
        Job: partitions is null ? "monolith" : "expert",
        DataDirectory: c.Plan.Options.DataDirectory,
        PartitionsFile: partitions,
        Expert: expert,
        Model: new ModelConfig(BaseChannels: c.Plan.Scale.BaseChannels, ChannelMultipliers: [1, 2, 4]),
        Steps: c.Plan.Steps,
        BatchSize: batch,
        WarmupSteps: Math.Min(100, c.Plan.Steps / 10),
        Seed: seed,
        CheckpointEvery: c.Plan.CheckpointEvery,
        KeepCheckpoints: c.Plan.Scale.EvalPoints,
        Precision: c.Plan.Scale.Precision).ForData(c.Data.Manifest);

    private static double TrainFlopsPerImage(DdmPlan plan) => 3 * plan.Calibration.ExpertForwardFlops;

    private void TrainMonolith(StageContext c, int seed, Action<double> progress)
    {
        var config = ConfigFor(c, seed, null, null, c.Plan.Scale.MonolithBatch);
        var outcome = Train(c, config, MonolithRun(seed), seed, "monolith", -1, progress);
        Stages.Put($"train-s{seed}-monolith", outcome);
    }

    private void TrainExpert(StageContext c, int seed, string arm, string method, int k, int expert, Action<double> progress)
    {
        var config = ConfigFor(c, seed, PartitionsPath(method, k, seed), expert, c.Plan.Scale.MonolithBatch / k);
        Stages.Put($"train-s{seed}-{arm}-e{expert}", Train(c, config, ExpertRun(seed, arm, expert), seed, arm, expert, progress));
    }

    private TrainingOutcome Train(StageContext c, TrainConfig config, string run, int seed, string arm, int expert, Action<double> progress)
    {
        var watch = Stopwatch.StartNew();
        var summary = TrainingRun.Execute(config, run, p => progress((double)p.Step / p.TotalSteps), log, c.Cancel);
        c.Cancel.ThrowIfCancellationRequested();
        if (!summary.Completed) throw new IslandsException($"{run}: training stopped at step {summary.Step} of {summary.TotalSteps}");
        return new TrainingOutcome(seed, arm, expert, run, summary.Step, config.BatchSize, watch.Elapsed.TotalSeconds, summary.Resumed,
            summary.Step * (double)config.BatchSize * TrainFlopsPerImage(c.Plan), summary.FinalLoss);
    }

    private void TrainRouter(StageContext c, int seed, string arm, string method, int k, Action<double> progress)
    {
        var scale = c.Plan.Scale;
        var config = new RouterConfig(DataDirectory: c.Plan.Options.DataDirectory, PartitionsFile: PartitionsPath(method, k, seed), ExpertCount: k,
            Steps: scale.RouterSteps, BatchSize: scale.RouterBatch, Seed: seed, CheckpointEvery: Math.Max(1, scale.RouterSteps / 4));
        var watch = Stopwatch.StartNew();
        var summary = RouterRun.Execute(config, RouterRunDirectory(seed, arm), p => progress((double)p.Step / p.TotalSteps), log, c.Cancel);
        c.Cancel.ThrowIfCancellationRequested();
        Stages.Put($"router-s{seed}-{arm}", new RouterOutcome(seed, arm, summary.RunDirectory, summary.Step, config.BatchSize,
            watch.Elapsed.TotalSeconds, summary.Step * (double)config.BatchSize * 3 * c.Plan.Calibration.RouterForwardFlops, summary.HeldOut));
    }

    private void RunFailure(StageContext c, int seed, Action<double> progress)
    {
        var k = c.Plan.Options.K;
        var arm = ArmName("kmeans", k);
        if (!Stages.TryGet<TrainingOutcome>($"train-s{seed}-{arm}-e0", out var baseline))
            throw new IslandsException($"seed {seed}: expert 0 of {arm} has no finished training stage to compare the interrupted run with");
        var config = ConfigFor(c, seed, PartitionsPath("kmeans", k, seed), 0, c.Plan.Scale.MonolithBatch / k);
        var outcome = new InterruptedTraining(log).Run(config, FailureRun(seed), baseline, progress, c.Cancel);
        Stages.Put($"failure-s{seed}", outcome with { Seed = seed });
    }
}
