using System.Diagnostics;
using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Sampling;
using Islands.Diffusion.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Islands.Diffusion.Distillation;

/// <summary>One way the images are looked at: as they are or turned 180°, with the labels of its target and calibrated source.</summary>
public sealed record DistillView(bool Rotated, long Target, long Source)
{
    public Tensor Apply(Tensor x) => Rotated ? x.flip(2, 3) : x;
}

/// <summary>The parameters a distillation run optimises: the images themselves, kept in the data range [-1, 1].</summary>
public sealed class DistilledImages : nn.Module
{
    private readonly Parameter pixels;

    public DistilledImages(Tensor initial) : base(nameof(DistilledImages))
    {
        pixels = new Parameter(initial.detach().clone());
        RegisterComponents();
    }

    public Parameter Pixels => pixels;
}

/// <summary>
/// Score distillation as a job of the one training loop: each step draws t and ε from (seed, step), asks the prior for
/// the direction of <see cref="ScoreDistillation"/>, and lets AdamW move the images along it (the prior's Jacobian is
/// never formed). The "loss" it reports is the mean squared direction, which falls as the images settle. Checkpoints
/// hold the images and the optimizer, so an interrupted run resumes exactly.
/// </summary>
public sealed class DistillationTrainer : IChunkedTrainer
{
    public const string ImagesFile = "images.bin";
    public const string OptimizerFile = "optimizer.bin";

    private readonly DistillConfig config;
    private readonly VelocityField prior;
    private readonly IDisposable? priorOwner;
    private readonly DistilledImages images;
    private readonly AdamW optimizer;
    private readonly List<float> lossHistory = [];
    private readonly CheckpointStore? checkpoints;
    private double trainSeconds;
    private readonly IReadOnlyList<DistillView> views;

    /// <param name="prior">The ensemble's (or one model's) unguided velocity field.</param>
    /// <param name="initial">[Count, C, H, W] starting images, or null for the seeded default (grey with a little noise).</param>
    /// <param name="priorOwner">Disposed with the trainer (the loaded experts and router).</param>
    /// <param name="views">The views whose directions are summed, with the prior's labels (a degraded class's label as a
    /// source); by default one upright view of TargetClass with the plain SourceClass as its source.</param>
    public DistillationTrainer(DistillConfig config, VelocityField prior, (long C, long H, long W) shape, CheckpointStore? checkpoints = null,
        Tensor? initial = null, IDisposable? priorOwner = null, IReadOnlyList<DistillView>? views = null)
    {
        config.ThrowIfInvalid();
        if (config.Job != "sds" && views is null && config.DegradedSource)
            throw new ConfigException("degradedSource", "a degraded source needs the prior's label for it");
        this.views = views ?? [new DistillView(false, config.TargetClass, config.SourceClass ?? config.TargetClass)];
        this.config = config;
        this.prior = prior;
        this.priorOwner = priorOwner;
        this.checkpoints = checkpoints;
        Guard = new NonFiniteGuard(config.MaxConsecutiveBadSteps);
        Shape = shape;
        using (var generator = new Generator((ulong)config.Seed + 101))
        {
            using var grey = initial is null ? (0.1 * randn([config.Count, shape.C, shape.H, shape.W], generator: generator)).clamp(-1, 1) : null;
            var start = initial ?? grey!;
            if (!start.shape.SequenceEqual([config.Count, shape.C, shape.H, shape.W]))
                throw new ConfigException("count",
                    $"initial images of shape [{string.Join(", ", start.shape)}] for {config.Count} images of {shape}");
            using var float32 = start.to_type(ScalarType.Float32);
            images = new DistilledImages(float32);
        }
        optimizer = optim.AdamW(images.parameters(), config.LearningRate, weight_decay: 0);
    }

    public (long C, long H, long W) Shape { get; }
    public long Step { get; private set; }
    public long TotalSteps => config.Steps;
    public int BatchSize => config.Count;
    public int CheckpointEvery => config.CheckpointEvery;
    public double TrainSeconds => trainSeconds;
    public IReadOnlyList<float> LossHistory => lossHistory;
    public NonFiniteGuard Guard { get; }
    public long? FaultNanFromStep { get; set; }
    public int MaxRollbacks => config.MaxRollbacks;
    public CheckpointStore Checkpoints => checkpoints ?? throw new InvalidOperationException("this trainer was built without a checkpoint store");

    /// <summary>A copy of the current images, [Count, C, H, W] in [-1, 1].</summary>
    public Tensor Images()
    {
        using var _ = no_grad();
        return images.Pixels.detach().clone();
    }

    public float Train(int maxSteps, CancellationToken cancel = default)
    {
        var watch = Stopwatch.StartNew();
        double sum = 0;
        var done = 0;
        var good = 0;
        var n = config.Count;
        while (done < maxSteps && Step < config.Steps && !cancel.IsCancellationRequested && !Guard.Diverging)
        {
            using var scope = NewDisposeScope();
            using var generator = new Generator(ExpertTrainer.StepSeed(config.Seed, Step));
            var t = config.TMin + (config.TMax - config.TMin) * rand(1, generator: generator, dtype: ScalarType.Float64).item<double>();
            var calibrated = config.CalibratedAt(Step);
            Tensor? summed = null;
            foreach (var view in views)
            {
                var eps = randn([n, Shape.C, Shape.H, Shape.W], generator: generator);
                var target = full(n, view.Target, dtype: ScalarType.Int64);
                var negative = full(n, calibrated ? view.Source : -1L, dtype: ScalarType.Int64);
                // A view's direction is computed on the viewed images and turned back (the 180° turn is its own inverse).
                var d = view.Apply(ScoreDistillation.Direction(prior, view.Apply(images.Pixels), eps, t, target, negative, config.Guidance,
                    noiseSource: !calibrated)).to_type(ScalarType.Float32);
                summed = summed is null ? d : summed + d;
            }
            var direction = summed!;
            if (FaultNanFromStep is { } from && Step >= from) direction = direction * float.NaN;
            var value = direction.pow(2).mean().item<float>();
            optimizer.zero_grad();
            // The gradient of Σ x·d with respect to x is d: the prior's Jacobian is skipped, as score distillation does.
            (images.Pixels * direction).sum().backward();
            if (Guard.Record(Step, value, NonFiniteGuard.GradientNorm(images.parameters())))
            {
                optimizer.step();
                using (no_grad()) images.Pixels.clamp_(-1, 1);
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

    public CheckpointRef Commit() =>
        TrainingCheckpoint.Save(Checkpoints, new TrainingState(Step, config.Seed, Step * config.Count, trainSeconds, lossHistory.ToArray()),
            config.KeepCheckpoints, [("images", images)], dir =>
            {
                images.save(Path.Combine(dir, ImagesFile));
                optimizer.save_state_dict(Path.Combine(dir, OptimizerFile));
            });

    public void Restore(string checkpointDirectory)
    {
        var state = TrainingCheckpoint.Load(checkpointDirectory, config.Seed, "distillation", dir =>
        {
            images.load(Path.Combine(dir, ImagesFile));
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
        images.Dispose();
        priorOwner?.Dispose();
    }
}
