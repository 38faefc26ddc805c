using System.Globalization;
using Islands.Hosting;
using Islands.Diffusion;

namespace Islands.Cli.Experiments;

/// <summary>What the user asked of <c>islands experiment ddm</c>; frozen in plan.json so that a rerun resumes the same experiment.</summary>
public sealed record DdmExperimentOptions(string DataDirectory, int K = 4, double BudgetMinutes = 120, int Seeds = 2, bool Quick = false)
{
    public IEnumerable<string> Validate()
    {
        var scale = DdmScale.For(Quick);
        if (K < 2 || scale.MonolithBatch % K != 0)
            yield return $"--k: {K} must be at least 2 and divide the monolith's batch of {scale.MonolithBatch} (2, 4, 8 or 16)";
        if (K > 16) yield return $"--k: {K} experts would train on batches under 8 images; use at most 16";
        if (BudgetMinutes is <= 0 or > 100_000 || double.IsNaN(BudgetMinutes))
            yield return $"--budget-minutes: {BudgetMinutes} must be more than 0 and at most 100000";
        if (Seeds is < 1 or > 20) yield return $"--seeds: {Seeds} must lie in 1..20";
        if (string.IsNullOrWhiteSpace(DataDirectory)) yield return "--data: a dataset directory is required";
    }

    /// <summary>The options whose change would make a resumed experiment a different one.</summary>
    public IEnumerable<string> DifferencesForResume(DdmExperimentOptions other)
    {
        if (K != other.K) yield return $"--k ({K} vs {other.K})";
        if (BudgetMinutes != other.BudgetMinutes)
            yield return $"--budget-minutes ({BudgetMinutes.ToString(CultureInfo.InvariantCulture)} vs " +
                $"{other.BudgetMinutes.ToString(CultureInfo.InvariantCulture)})";
        if (Seeds != other.Seeds) yield return $"--seeds ({Seeds} vs {other.Seeds})";
        if (Quick != other.Quick) yield return $"--quick ({Quick} vs {other.Quick})";
        if (Path.GetFullPath(DataDirectory) != Path.GetFullPath(other.DataDirectory))
            yield return $"--data ({DataDirectory} vs {other.DataDirectory})";
    }
}

/// <summary>
/// The fixed shape of the experiment at one scale: what stays constant while the budget only sets the training steps.
/// </summary>
/// <param name="MonolithBatch">B; each of K experts trains at B/K, so every arm sees the same images per step.</param>
/// <param name="EvalPoints">Checkpoints along training at which every method is scored (the last is the end).</param>
/// <param name="Samples">Generated images per FID/KID score.</param>
public sealed record DdmScale(
    int MonolithBatch,
    int BaseChannels,
    int Samples,
    int SamplingSteps,
    int EvalPoints,
    int RouterSteps,
    int RouterBatch,
    int FineClusters,
    int[] AblationKs,
    string Precision,
    int EvaluatorEpochs,
    int? EvaluatorImages,
    int MinSteps,
    int GridImages)
{
    public static DdmScale For(bool quick) => quick
        ? new DdmScale(MonolithBatch: 16, BaseChannels: 8, Samples: 96, SamplingSteps: 3, EvalPoints: 2, RouterSteps: 30, RouterBatch: 64,
            FineClusters: 32, AblationKs: [2, 4, 8], Precision: "bf16", EvaluatorEpochs: 1, EvaluatorImages: 3000, MinSteps: 24, GridImages: 16)
        : new DdmScale(MonolithBatch: 128, BaseChannels: 32, Samples: 5000, SamplingSteps: 10, EvalPoints: 3, RouterSteps: 2000, RouterBatch: 256,
            FineClusters: 1024, AblationKs: [2, 4, 8], Precision: "bf16", EvaluatorEpochs: 3, EvaluatorImages: null, MinSteps: 60, GridImages: 64);

    /// <summary>Every K this experiment trains: the main K and the ablation's, main first.</summary>
    public int[] KsWith(int k) => [k, .. AblationKs.Where(a => a != k)];
}

/// <summary>Throughput measured on this machine before planning, so that the budget in minutes becomes training steps.</summary>
/// <param name="TrainImagesPerSecond">By batch size: training images per second at that batch.</param>
public sealed record DdmCalibration(IReadOnlyDictionary<int, double> TrainImagesPerSecond, double SampleRowsPerSecond, double RouterStepsPerSecond,
    double ExpertForwardFlops, double RouterForwardFlops, int Threads);

/// <summary>The frozen plan of one experiment: its options, scale, the training steps the budget allows, and why.</summary>
public sealed record DdmPlan(
    int SchemaVersion,
    DdmExperimentOptions Options,
    DdmScale Scale,
    int Steps,
    int[] Ks,
    DdmCalibration Calibration,
    double EstimatedMinutes,
    string Command,
    string Machine,
    DateTimeOffset Created)
{
    public const int CurrentSchemaVersion = 1;

    public int CheckpointEvery => Steps / Scale.EvalPoints;
    public long[] EvalSteps => [.. Enumerable.Range(1, Scale.EvalPoints).Select(p => (long)CheckpointEvery * p)];

    /// <summary>Training seconds one seed spends per step of S, over every arm (monolith, each K clustered, random K, the failure rerun).</summary>
    public static double TrainSecondsPerStep(DdmScale scale, int k, Func<int, double> imagesPerSecond)
    {
        var b = scale.MonolithBatch;
        var seconds = b / imagesPerSecond(b);
        foreach (var kk in scale.KsWith(k)) seconds += b / imagesPerSecond(b / kk);
        seconds += b / imagesPerSecond(b / k);             // random partitions
        seconds += (double)(b / k) / imagesPerSecond(b / k); // the interrupted expert, trained again
        return seconds;
    }

    /// <summary>Network rows one seed evaluates while scoring: along training for the monolith and DDM's four methods, then the ablations.</summary>
    public static double EvaluationRowsPerSeed(DdmScale scale, int k)
    {
        var perImage = scale.SamplingSteps;
        double alongTraining = scale.EvalPoints * (1 + 1 + Math.Min(2, k) + k + 1);
        double ablations = 1 /* random */ + scale.KsWith(k).Length - 1 /* other K, top1 */ + 1 /* gaussian router */ + 1 /* failure */;
        return (alongTraining + ablations) * scale.Samples * perImage;
    }

    /// <summary>
    /// The training steps S that fit the remaining budget, a multiple of the evaluation points. Everything but training
    /// (scoring, routers, the failure run's restarts) is estimated from the calibration and paid first.
    /// </summary>
    public static (int Steps, double EstimatedSeconds) Solve(DdmExperimentOptions options, DdmScale scale, DdmCalibration calibration,
        double secondsLeft)
    {
        double Rate(int batch) => calibration.TrainImagesPerSecond.TryGetValue(batch, out var r) ? r
            : throw new InvalidOperationException($"no calibration at batch {batch}");
        var perStep = TrainSecondsPerStep(scale, options.K, Rate);
        var routers = scale.KsWith(options.K).Length + 1;
        var fixedPerSeed = EvaluationRowsPerSeed(scale, options.K) / calibration.SampleRowsPerSecond
            + routers * scale.RouterSteps / calibration.RouterStepsPerSecond
            + 2 * ProcessStartSeconds;
        // Keep a tenth of the budget for what the model does not see: feature extraction, checkpoints, loading.
        var usable = 0.9 * secondsLeft - options.Seeds * fixedPerSeed;
        var steps = (int)Math.Floor(usable / (options.Seeds * perStep));
        steps -= steps % scale.EvalPoints;
        if (steps < scale.MinSteps)
        {
            if (!options.Quick)
            {
                var needed = (options.Seeds * (fixedPerSeed + scale.MinSteps * perStep) / 0.9 + (options.BudgetMinutes * 60 - secondsLeft)) / 60;
                throw new ConfigException("--budget-minutes", string.Create(CultureInfo.InvariantCulture,
                    $"{options.BudgetMinutes} minutes leave {Math.Max(0, steps)} training steps on this machine; {scale.MinSteps} steps with " +
                    $"{options.Seeds} seeds need about {Math.Ceiling(needed)} minutes (or fewer --seeds)"));
            }
            steps = scale.MinSteps;
        }
        return (steps, options.Seeds * (fixedPerSeed + steps * perStep) / 0.9);
    }

    /// <summary>A process start and model load, paid twice by the interrupted run.</summary>
    public const double ProcessStartSeconds = 5;
}
