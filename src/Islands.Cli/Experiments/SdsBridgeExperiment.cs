using System.Diagnostics;
using System.Globalization;
using Islands.Diffusion;
using Islands.Diffusion.Data;
using Islands.Diffusion.Distillation;
using Islands.Diffusion.IO;
using Islands.Diffusion.Metrics;
using Islands.Diffusion.Numerics;
using Islands.Diffusion.Sampling;
using static TorchSharp.torch;

namespace Islands.Cli.Experiments;

/// <summary>What <c>islands experiment sds-bridge</c> was asked for.</summary>
/// <param name="Classes">Target classes of the class-to-image comparison; every table averages over them.</param>
/// <param name="TranslateFrom">The translation's input class (its test images) and target class.</param>
public sealed record SdsBridgeOptions(string Store, int[] Classes, int Seeds, int Count, int Steps, double Guidance, int TranslateFrom,
    int TranslateTo, bool Quick)
{
    public IEnumerable<string> Validate()
    {
        if (Classes.Length == 0) yield return "--classes: at least one class";
        if (Seeds < 1) yield return $"--seeds: {Seeds} must be at least 1";
        if (Count is < 2 or > 256) yield return $"--count: {Count} must lie in 2..256 (FID needs more than one image)";
        if (Steps < 2) yield return $"--steps: {Steps} must be at least 2";
        if (TranslateFrom == TranslateTo) yield return "--translate: the input and target classes must differ";
    }
}

/// <summary>The frozen plan (plan.json): the options and every setting derived from them, so that a rerun resumes the same experiment.</summary>
public sealed record SdsBridgePlan(SdsBridgeOptions Options, string CommandLine, string Machine, DateTimeOffset Created, int SamplingSteps,
    double SamplingCfg, double[] TranslationCaps, int TranslationSteps, double[] SdeditStrengths, int SdeditSteps, double SdeditCfg,
    int ClassifierEpochs, int? ClassifierTrainLimit, string[] ClassNames)
{
    public static readonly string[] Methods = ["sampling", "sds", "nfsd", "bridge"];
}

/// <summary>One method on one class and seed: the classifier's scores against the class's test images, and the images' statistics.</summary>
public sealed record MethodOutcome(string Method, int Class, int Seed, int Count, double TargetProbability, double Fid, double Kid,
    double Saturation, double LaplacianVariance, double SecondsPerStep, int Steps, string Grid, string? Trajectory);

/// <summary>One translation setting (the bridge's t cap, or SDEdit's strength) on one seed: realism against faithfulness.</summary>
public sealed record TranslationOutcome(string Method, double Setting, int Seed, double TargetProbability, double Ssim, double Rmse, string Grid);

/// <summary>
/// Score distillation against sampling with the islands' ensemble as the prior (McAllister et al., NeurIPS 2024, read on
/// this project's experts): per class and seed, the ensemble's guided sampling, sds, nfsd and the bridge, each scored
/// by the project's classifier against the class's test images; and a translation swept over the bridge's t cap and
/// SDEdit's strength. Every unit is a stage file (runs are checkpointed runs of their own), so a rerun resumes.
/// </summary>
public sealed class SdsBridgeExperiment(string output, Action<string> log)
{
    public string Output { get; } = Path.GetFullPath(output);
    public DdmStageStore Stages { get; } = new(Path.GetFullPath(output));

    public SdsBridgePlan Prepare(SdsBridgeOptions options, string commandLine)
    {
        Directory.CreateDirectory(Output);
        var planPath = Path.Combine(Output, "plan.json");
        if (File.Exists(planPath))
        {
            var frozen = Json.Read<SdsBridgePlan>(planPath);
            if (System.Text.Json.JsonSerializer.Serialize(frozen.Options, Json.Compact) != System.Text.Json.JsonSerializer.Serialize(options,
                Json.Compact))
                throw new ConfigException("--out",
                    $"{Output} holds an experiment with other options; rerun with the same ones, or use another --out");
            return frozen;
        }
        using var prior = EnsemblePrior.Load(options.Store, "top1");
        if (prior.DegradedLabel(0) is null)
            throw new ConfigException("--store", $"{options.Store}: the experts did not learn the degraded condition, which nfsd and the bridge " +
                "take as their source (train them with --degraded-condition, or islands demo --degraded-condition)");
        var bad = options.Classes.Append(options.TranslateFrom).Append(options.TranslateTo).FirstOrDefault(c => c < 0 || c >= prior.ClassCount, -1);
        if (bad >= 0 || options.Classes.Any(c => c < 0)) throw new ConfigException("--classes", $"{bad} is not a class of the store's experts");
        var data = DistillationInputs.Dataset(options.Store)
            ?? throw new ConfigException("--store", $"{options.Store}: the experts' dataset is not readable here; the scores need its test split");
        var quick = options.Quick;
        var (model, _) = CpuInfo.Read();
        var plan = new SdsBridgePlan(options, commandLine, $"{model}, {Environment.ProcessorCount} cores", DateTimeOffset.UtcNow,
            SamplingSteps: quick ? 5 : 50, SamplingCfg: 3, TranslationCaps: quick ? [0.5] : [0.3, 0.5, 0.7],
            TranslationSteps: quick ? options.Steps : Math.Max(2, options.Steps * 3 / 5), SdeditStrengths: quick ? [0.5] : [0.3, 0.5, 0.7, 0.9],
            SdeditSteps: quick ? 5 : 20, SdeditCfg: 3, ClassifierEpochs: quick ? 1 : 3, ClassifierTrainLimit: quick ? 2000 : null,
            ClassNames: [.. data.Manifest.Classes]);
        Json.WriteAtomic(planPath, plan);
        return plan;
    }

    public string RunDirectory(string name) => Path.Combine(Output, "runs", name);

    private sealed record Unit(string Name, Func<Context, object> Compute);

    /// <summary>What every unit shares: the prior (loaded once), the classifier, the dataset and the cancellation.</summary>
    private sealed class Context(SdsBridgePlan plan, EnsemblePrior prior, Evaluator evaluator, CanonicalDataset data, CancellationToken cancel)
    {
        public SdsBridgePlan Plan { get; } = plan;
        public EnsemblePrior Prior { get; } = prior;
        public Evaluator Evaluator { get; } = evaluator;
        public CanonicalDataset Data { get; } = data;
        public CancellationToken Cancel { get; } = cancel;
    }

    private static string Name(double v) => v.ToString("0.00", CultureInfo.InvariantCulture);

    private List<Unit> Units(SdsBridgePlan plan)
    {
        var o = plan.Options;
        var units = new List<Unit>();
        for (var seed = 0; seed < o.Seeds; seed++)
        {
            var s = seed;
            foreach (var cls in o.Classes)
                foreach (var method in SdsBridgePlan.Methods)
                    units.Add(new Unit($"class-{method}-c{cls}-s{s}", c => method == "sampling" ? Sample(c, cls, s) : Distill(c, method, cls, s)));
            foreach (var cap in plan.TranslationCaps) units.Add(new Unit($"translate-bridge-t{Name(cap)}-s{s}", c => TranslateBridge(c, cap, s)));
            foreach (var strength in plan.SdeditStrengths) units.Add(new Unit($"translate-sdedit-{Name(strength)}-s{s}", c => Sdedit(c, strength,
                s)));
        }
        return units;
    }

    public void Run(SdsBridgePlan plan, Action<int, int, string> progress, CancellationToken cancel)
    {
        var units = Units(plan);
        var todo = units.Where(u => !File.Exists(Path.Combine(Stages.Root, u.Name + ".json"))).ToList();
        if (todo.Count == 0) return;
        var data = DistillationInputs.Dataset(plan.Options.Store)!;
        using var evaluator = Evaluator.ForDataset(data, plan.ClassifierEpochs, log: log, trainLimit: plan.ClassifierTrainLimit);
        using var prior = EnsemblePrior.Load(plan.Options.Store, "top1");
        var context = new Context(plan, prior, evaluator, data, cancel);
        var done = units.Count - todo.Count;
        foreach (var unit in todo)
        {
            cancel.ThrowIfCancellationRequested();
            progress(done, units.Count, unit.Name);
            Stages.Put(unit.Name, unit.Compute(context));
            done++;
        }
        progress(done, units.Count, "done");
    }

    public IReadOnlyList<MethodOutcome> MethodOutcomes() => Stages.All<MethodOutcome>("class-");

    public IReadOnlyList<TranslationOutcome> TranslationOutcomes() => Stages.All<TranslationOutcome>("translate-");

    /// <summary>The test split's images of a class (at most 1000), the reference of its FID and statistics.</summary>
    public static Tensor RealImages(CanonicalDataset data, int cls)
    {
        var test = data.Test;
        return ImageTensors.ToTensor(test.Subset([.. Enumerable.Range(0, test.Count).Where(i => test.Labels[i] == cls).Take(1000)]));
    }

    private MethodOutcome Measure(Context c, string method, int cls, int seed, Tensor images, double secondsPerStep, int steps, string grid,
        string? trajectory)
    {
        using var real = RealImages(c.Data, cls);
        var quality = c.Evaluator.Score(images, real);
        var stats = DistillationRun.Stats(images);
        return new MethodOutcome(method, cls, seed, (int)images.shape[0], c.Evaluator.ClassProbability(images, cls), quality.Fid, quality.Kid,
            stats.Saturation, stats.LaplacianVariance, secondsPerStep, steps, Path.GetRelativePath(Output, grid),
            trajectory is null ? null : Path.GetRelativePath(Output, trajectory));
    }

    private object Sample(Context c, int cls, int seed)
    {
        var p = c.Plan;
        var watch = Stopwatch.StartNew();
        using var images = FlowSampler.Sample(c.Prior.Field(p.SamplingCfg), p.Options.Count, [.. Enumerable.Repeat((long)cls, p.Options.Count)],
            new SamplerOptions(Steps: p.SamplingSteps, Seed: seed), c.Prior.Shape);
        var seconds = watch.Elapsed.TotalSeconds / p.SamplingSteps;
        var dir = RunDirectory($"sampling-c{cls}-s{seed}");
        Directory.CreateDirectory(dir);
        var grid = Path.Combine(dir, DistillationRun.GridFile);
        var png = DistillationRun.Encode(images);
        AtomicFile.Write(grid, stream => stream.Write(png));
        return Measure(c, "sampling", cls, seed, images, seconds, p.SamplingSteps, grid, null);
    }

    private DistillConfig Config(Context c, string method, int target, int seed, int steps) => new(Job: method, Store: c.Plan.Options.Store,
        TargetClass: target, Count: c.Plan.Options.Count, Steps: steps, SwitchStep: steps / 2, Guidance: c.Plan.Options.Guidance, Seed: seed,
        CheckpointEvery: Math.Max(10, steps / 10));

    private object Distill(Context c, string method, int cls, int seed)
    {
        var dir = RunDirectory($"{method}-c{cls}-s{seed}");
        MethodOutcome? outcome = null;
        var config = Config(c, method, cls, seed, c.Plan.Options.Steps);
        var summary = DistillationRun.Execute(config, dir, log: null, cancel: c.Cancel, options: new DistillationOptions
        {
            Evaluate = false,
            Finished = images => outcome = Measure(c, method, cls, seed, images, 0, config.Steps, Path.Combine(dir, DistillationRun.GridFile),
                Path.Combine(dir, DistillationRun.TrajectoryFile)),
        });
        if (!summary.Completed) throw new OperationCanceledException($"{dir} stopped at step {summary.Step}; rerun to resume");
        return outcome! with { SecondsPerStep = summary.SecondsPerStep };
    }

    private object TranslateBridge(Context c, double cap, int seed)
    {
        var o = c.Plan.Options;
        var dir = RunDirectory($"translate-bridge-t{Name(cap)}-s{seed}");
        var config = Config(c, "bridge", o.TranslateTo, seed, c.Plan.TranslationSteps) with
        {
            Task = "translate", InputClass = o.TranslateFrom, TMax = cap, Count = Math.Min(8, o.Count),
        };
        TranslationOutcome? outcome = null;
        using var inputs = DistillationInputs.TestImages(c.Data, o.TranslateFrom, config.Count, seed);
        var summary = DistillationRun.Execute(config, dir, cancel: c.Cancel, options: new DistillationOptions
        {
            Evaluate = false,
            Finished = images => outcome = new TranslationOutcome("bridge", cap, seed, c.Evaluator.ClassProbability(images, o.TranslateTo),
                ImageStatistics.Ssim(inputs, images), ImageStatistics.Rmse(inputs, images),
                Path.GetRelativePath(Output, Path.Combine(dir, DistillationRun.GridFile))),
        });
        if (!summary.Completed) throw new OperationCanceledException($"{dir} stopped at step {summary.Step}; rerun to resume");
        return outcome!;
    }

    private object Sdedit(Context c, double strength, int seed)
    {
        var o = c.Plan.Options;
        using var inputs = DistillationInputs.TestImages(c.Data, o.TranslateFrom, Math.Min(8, o.Count), seed);
        using var edited = Diffusion.Distillation.Sdedit.Run(c.Prior.Field(c.Plan.SdeditCfg), inputs, o.TranslateTo, strength, c.Plan.SdeditSteps,
            seed);
        var dir = RunDirectory($"translate-sdedit-{Name(strength)}-s{seed}");
        Directory.CreateDirectory(dir);
        var grid = Path.Combine(dir, DistillationRun.GridFile);
        var png = DistillationRun.Encode(edited);
        AtomicFile.Write(grid, stream => stream.Write(png));
        var inputsPng = DistillationRun.Encode(inputs);
        AtomicFile.Write(Path.Combine(dir, "inputs.png"), stream => stream.Write(inputsPng));
        return new TranslationOutcome("sdedit", strength, seed, c.Evaluator.ClassProbability(edited, o.TranslateTo), ImageStatistics.Ssim(inputs,
            edited),
            ImageStatistics.Rmse(inputs, edited), Path.GetRelativePath(Output, grid));
    }
}
