using System.Diagnostics;
using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.IO;
using Islands.Diffusion.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Islands.Diffusion.Routing;

public sealed record RouterBandReport(double TMin, double TMax, int Count, double Accuracy, double ExpectedCalibrationError, double MeanConfidence);

/// <summary>
/// Trains the router with cross-entropy against each image's partition, on x_t from the experts' path with t uniform.
/// Images are drawn from the natural data distribution (never partition-balanced): p(k | x_t) includes each
/// partition's share. Randomness of step s depends only on (seed, s), so resume equals an uninterrupted run.
/// </summary>
public sealed class RouterTrainer : IChunkedTrainer
{
    public const string WeightsFile = "router.bin";
    public const string OptimizerFile = "optimizer.bin";
    private readonly RouterConfig config;
    private readonly Tensor images;
    private readonly Tensor labels;
    private readonly Tensor targets;
    private readonly Tensor heldOutImages;
    private readonly Tensor heldOutLabels;
    private readonly Tensor heldOutTargets;
    private readonly AdamW optimizer;
    private readonly List<float> lossHistory = [];
    private double trainSeconds;
    private readonly CheckpointStore? checkpoints;

    public RouterNet Router { get; }
    public long Step { get; private set; }
    public IReadOnlyList<float> LossHistory => lossHistory;
    public double TrainSeconds => trainSeconds;
    public long TotalSteps => config.Steps;
    public int BatchSize => config.BatchSize;
    public int CheckpointEvery => config.CheckpointEvery;
    public NonFiniteGuard Guard { get; }
    public int MaxRollbacks => config.MaxRollbacks;

    /// <summary>Test-only: from this step on the loss is NaN. Defaults to <see cref="FaultInjection"/>'s variable (job "router").</summary>
    public long? FaultNanFromStep { get; set; } = FaultInjection.NanFromStep("router");
    public CheckpointStore Checkpoints => checkpoints ?? throw new InvalidOperationException("this trainer was built without a checkpoint store");
    public CheckpointRef Commit() => SaveCheckpoint(Checkpoints);
    public void Restore(string checkpointDirectory) => LoadCheckpoint(checkpointDirectory);

    /// <param name="allImages">[N, C, H, W] every training image; a seeded HeldOutFraction is kept aside for evaluation.</param>
    public RouterTrainer(RouterConfig config, Tensor allImages, Tensor allLabels, int[] assignments, CheckpointStore? checkpoints = null)
    {
        this.checkpoints = checkpoints;
        config.ThrowIfInvalid();
        this.config = config;
        Guard = new NonFiniteGuard(config.MaxConsecutiveBadSteps);
        var n = allImages.shape[0];
        if (assignments.Length != n) throw new ConfigException("partitionsFile", $"assigns {assignments.Length} images but the dataset has {n}");
        using var generator = new Generator((ulong)config.Seed + 17);
        var order = randperm(n, generator: generator);
        var heldOut = Math.Max(1, (long)Math.Round(n * config.HeldOutFraction));
        var trainIdx = order[..(int)(n - heldOut)];
        var testIdx = order[(int)(n - heldOut)..];
        var all = tensor(assignments.Select(a => (long)a).ToArray());
        images = allImages.index_select(0, trainIdx).DetachFromDisposeScope();
        labels = allLabels.index_select(0, trainIdx).DetachFromDisposeScope();
        targets = all.index_select(0, trainIdx).DetachFromDisposeScope();
        heldOutImages = allImages.index_select(0, testIdx).DetachFromDisposeScope();
        heldOutLabels = allLabels.index_select(0, testIdx).DetachFromDisposeScope();
        heldOutTargets = all.index_select(0, testIdx).DetachFromDisposeScope();
        all.Dispose();
        order.Dispose();
        random.manual_seed(config.Seed);
        Router = RouterNet.For(allImages[0].numel(), config);
        optimizer = optim.AdamW(Router.parameters(), config.LearningRate);
    }

    public float Train(int maxSteps, CancellationToken cancel = default)
    {
        var watch = Stopwatch.StartNew();
        double sum = 0;
        var done = 0;
        var good = 0;
        Router.train();
        while (done < maxSteps && Step < config.Steps && !cancel.IsCancellationRequested && !Guard.Diverging)
        {
            using var scope = NewDisposeScope();
            using var generator = new Generator(ExpertTrainer.StepSeed(config.Seed, Step));
            var index = randint(0, images.shape[0], [config.BatchSize], generator: generator);
            var x0 = images.index_select(0, index);
            var c = labels.index_select(0, index);
            var drop = rand(config.BatchSize, generator: generator) < 0.1;
            c = where(drop, full_like(c, Router.NullClass), c);
            // Drawn only for such routers, so a run without the condition keeps its random stream.
            if (config.DegradedCondition)
                (x0, c) = Degradations.Mix(x0, labels.index_select(0, index), c, config.DegradedFraction, config.ClassCount, generator);
            var t = rand(config.BatchSize, generator: generator);
            var eps = randn(x0.shape, generator: generator);
            var logits = Router.call(FlowMatching.Interpolate(x0, eps, t), t, c);
            var loss = nn.functional.cross_entropy(logits, targets.index_select(0, index));
            if (FaultNanFromStep is { } from && Step >= from) loss = loss * float.NaN;
            foreach (var g in optimizer.ParamGroups)
                g.LearningRate = LearningRateSchedule.At(Step, config.LearningRate, Math.Min(100, config.Steps / 10), config.Steps, 0.1);
            optimizer.zero_grad();
            loss.backward();
            var value = loss.item<float>();
            // A bad step (see NonFiniteGuard) leaves weights and optimizer untouched but still advances Step.
            if (Guard.Record(Step, value, NonFiniteGuard.GradientNorm(Router.parameters())))
            {
                optimizer.step();
                sum += value;
                good++;
            }
            else
            {
                optimizer.zero_grad();
                value = float.NaN;
            }
            lossHistory.Add(value);
            Step++;
            done++;
        }
        trainSeconds += watch.Elapsed.TotalSeconds;
        return good == 0 ? float.NaN : (float)(sum / good);
    }

    /// <summary>Accuracy and expected calibration error (10 confidence bins) on the held-out images, per band of t.</summary>
    public IReadOnlyList<RouterBandReport> Evaluate(int bands = 5, int seed = 1234)
        => EvaluateRouter(Router, heldOutImages, heldOutLabels, heldOutTargets, bands, seed);

    /// <summary>
    /// The same on degraded copies of the held-out images (one fixed draw), asked as "degraded, class c" by a router that
    /// learned the condition and as class c by one that did not: how well the score service's degraded queries are routed.
    /// </summary>
    public IReadOnlyList<RouterBandReport> EvaluateDegraded(int bands = 5, int seed = 1234)
    {
        using var generator = new Generator((ulong)seed + 99);
        using var degraded = Degradations.Apply(heldOutImages, generator);
        using var asked = Router.LearnedDegradedCondition ? heldOutLabels + Modules.UNet.DegradedLabel(config.ClassCount, 0) : heldOutLabels.clone();
        return EvaluateRouter(Router, degraded, asked, heldOutTargets, bands, seed);
    }

    public static IReadOnlyList<RouterBandReport> EvaluateRouter(IRouter router, Tensor images, Tensor labels, Tensor targets, int bands, int seed)
    {
        using var _ = no_grad();
        (router as nn.Module)?.eval();
        var reports = new List<RouterBandReport>();
        for (var b = 0; b < bands; b++)
        {
            using var scope = NewDisposeScope();
            double lo = (double)b / bands, hi = (double)(b + 1) / bands;
            using var generator = new Generator((ulong)(seed + b));
            var n = images.shape[0];
            var t = rand(n, generator: generator) * (hi - lo) + lo;
            var eps = randn(images.shape, generator: generator);
            var probabilities = router.Posterior(FlowMatching.Interpolate(images, eps, t), t, labels).to_type(ScalarType.Float64);
            var (confidence, predicted) = probabilities.max(1);
            var correct = predicted.eq(targets).to_type(ScalarType.Float64);
            var conf = confidence.data<double>().ToArray();
            var ok = correct.data<double>().ToArray();
            reports.Add(new RouterBandReport(lo, hi, (int)n, ok.Average(), ExpectedCalibrationError(conf, ok), conf.Average()));
        }
        return reports;
    }

    public static double ExpectedCalibrationError(double[] confidence, double[] correct, int bins = 10)
    {
        double total = 0;
        for (var b = 0; b < bins; b++)
        {
            double lo = (double)b / bins, hi = (double)(b + 1) / bins;
            var members = Enumerable.Range(0, confidence.Length)
                .Where(i => confidence[i] > lo && confidence[i] <= hi || b == 0 && confidence[i] == 0).ToArray();
            if (members.Length == 0) continue;
            total += members.Length / (double)confidence.Length * Math.Abs(members.Average(i => correct[i]) - members.Average(i => confidence[i]));
        }
        return total;
    }

    public CheckpointRef SaveCheckpoint(CheckpointStore store) =>
        TrainingCheckpoint.Save(store, new TrainingState(Step, config.Seed, Step * config.BatchSize, trainSeconds, lossHistory.ToArray()),
            config.KeepCheckpoints,
            [("router", Router)], dir =>
        {
            Router.save(Path.Combine(dir, WeightsFile));
            optimizer.save_state_dict(Path.Combine(dir, OptimizerFile));
        });

    public void LoadCheckpoint(string directory)
    {
        var state = TrainingCheckpoint.Load(directory, config.Seed, "router", dir =>
        {
            Router.load(Path.Combine(dir, WeightsFile));
            optimizer.load_state_dict(Path.Combine(dir, OptimizerFile));
        });
        Step = state.Step;
        Guard.Reset();
        trainSeconds = state.TrainSeconds;
        lossHistory.Clear();
        lossHistory.AddRange(state.LossHistory);
    }

    public void Dispose()
    {
        optimizer.Dispose();
        Router.Dispose();
        foreach (var t in new[] { images, labels, targets, heldOutImages, heldOutLabels, heldOutTargets }) t.Dispose();
    }
}
