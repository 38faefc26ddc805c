using System.Diagnostics;
using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Configs;
using Islands.Diffusion.IO;
using Islands.Diffusion.Modules;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Islands.Diffusion.Training;

/// <summary>
/// Trains one flow-matching UNet (an expert on one partition, or the monolith on all data). It knows nothing of actors:
/// callers drive it in chunks with <see cref="Train"/> and commit checkpoints with <see cref="SaveCheckpoint"/>.
/// All randomness of step s comes from a generator seeded with (seed, s), so a resumed run repeats an uninterrupted one.
/// </summary>
public sealed class ExpertTrainer : IChunkedTrainer
{
    private readonly TrainConfig config;
    private readonly Tensor images;
    private readonly Tensor labels;
    private readonly Device device;
    private readonly AdamW optimizer;
    private readonly List<float> lossHistory = [];
    private readonly Parameter[] parameters;
    private readonly Parameter[] emaParameters;
    private readonly UNet? compute;
    private readonly Parameter[] computeParameters = [];
    private double trainSeconds;
    private readonly CheckpointStore? checkpoints;

    public UNet Model { get; }
    public UNet Ema { get; }
    public long Step { get; private set; }
    public long ImagesSeen { get; private set; }
    public IReadOnlyList<float> LossHistory => lossHistory;
    public TrainConfig Config => config;
    public double TrainSeconds => trainSeconds;
    public long TotalSteps => config.Steps;
    public long TrainImageCount => images.shape[0];
    public NonFiniteGuard Guard { get; }
    public int MaxRollbacks => config.MaxRollbacks;

    /// <summary>Test-only: from this step on the loss (and so every gradient) is NaN. Defaults to <see cref="FaultInjection"/>'s variable.</summary>
    public long? FaultNanFromStep { get; set; }

    /// <summary>Test-only: skip the finiteness check (bench train measures its cost this way). Never turn it off in a run.</summary>
    public bool GuardEnabled { get; set; } = true;

    /// <summary>Benchmarks only: when set, every step charges its phases' time to it.</summary>
    public StepProfile? Profile { get; set; }
    public int BatchSize => config.BatchSize;
    public int CheckpointEvery => config.CheckpointEvery;
    public CheckpointStore Checkpoints => checkpoints ?? throw new InvalidOperationException("this trainer was built without a checkpoint store");
    public CheckpointRef Commit() => SaveCheckpoint(Checkpoints);
    void IChunkedTrainer.Restore(string checkpointDirectory) => LoadCheckpoint(checkpointDirectory);

    /// <param name="images">[N, C, H, W] in [-1, 1], already restricted to this expert's partition.</param>
    /// <param name="labels">[N] int64 class labels. The trainer owns both tensors from here on and disposes them.</param>
    /// <param name="checkpoints">Where <see cref="Commit"/> writes; null for a trainer that only saves explicitly.</param>
    public ExpertTrainer(TrainConfig config, Tensor images, Tensor labels, Device? device = null, CheckpointStore? checkpoints = null)
    {
        this.checkpoints = checkpoints;
        config.ThrowIfInvalid();
        if (images.shape[0] == 0) throw new ConfigException("expert", "the partition holds no training images");
        this.config = config;
        Guard = new NonFiniteGuard(config.MaxConsecutiveBadSteps);
        FaultNanFromStep = FaultInjection.NanFromStep(TrainingJob.ForExpert(config).Name);
        this.device = device ?? CPU;
        this.images = images.to(this.device).DetachFromDisposeScope();
        this.labels = labels.to(this.device).DetachFromDisposeScope();
        random.manual_seed(config.Seed);
        Model = config.ModelOrDefault.Build();
        Ema = config.ModelOrDefault.Build();
        Model.to(this.device);
        Ema.to(this.device);
        CopyWeights(Model, Ema);
        Ema.eval();
        parameters = Model.parameters().ToArray();
        emaParameters = Ema.parameters().ToArray();
        optimizer = optim.AdamW(parameters, config.LearningRate, 0.9, 0.999, 1e-8, config.WeightDecay);
        if (Numerics.NumericsPolicy.EffectivePrecision(config.Precision) == "bf16")
        {
            // Mixed precision without autocast: a bfloat16 copy of the model computes forward and backward; the fp32
            // master weights, their gradients, the optimizer state and the EMA stay fp32; GroupNorm32 keeps
            // normalisation statistics in fp32 and the loss is taken in fp32.
            compute = config.ModelOrDefault.Build();
            compute.to(this.device);
            compute.to(ScalarType.BFloat16);
            computeParameters = compute.parameters().ToArray();
        }
    }

    /// <summary>Runs up to <paramref name="maxSteps"/> steps (never past Config.Steps); returns the mean loss of the chunk.</summary>
    public float Train(int maxSteps, CancellationToken cancel = default)
    {
        var stopwatch = Stopwatch.StartNew();
        double sum = 0;
        var done = 0;
        var good = 0;
        Model.train();
        while (done < maxSteps && Step < config.Steps && !cancel.IsCancellationRequested && !Guard.Diverging)
        {
            var loss = TrainStep();
            done++;
            if (!float.IsFinite(loss)) continue;
            sum += loss;
            good++;
        }
        trainSeconds += stopwatch.Elapsed.TotalSeconds;
        return good == 0 ? float.NaN : (float)(sum / good);
    }

    /// <summary>
    /// One step. A bad step (loss or total gradient norm not finite) zeroes the gradients and skips the optimizer and the
    /// EMA, records NaN in the loss history, and still advances Step (and ImagesSeen) like a good one.
    /// </summary>
    private float TrainStep()
    {
        using var scope = NewDisposeScope();
        Profile?.BeginStep();
        using var generator = new Generator(StepSeed(config.Seed, Step), device);
        var batch = config.BatchSize;
        var index = randint(0, images.shape[0], [batch], generator: generator, device: device);
        var x0 = images.index_select(0, index);
        var classes = labels.index_select(0, index);
        var drop = rand(batch, generator: generator, device: device) < config.LabelDropout;
        classes = where(drop, full_like(classes, Model.NullClass), classes);
        if (config.ModelOrDefault.DegradedCondition) (x0, classes) = Degradations.Mix(x0, labels.index_select(0, index), classes,
            config.DegradedFraction, config.ModelOrDefault.ClassCount, generator);
        var t = FlowMatching.SampleTimes(batch, config.TimeSampling, generator, device);
        var eps = randn(x0.shape, generator: generator, device: device);
        var xt = FlowMatching.Interpolate(x0, eps, t);
        var lr = LearningRateSchedule.At(Step, config.LearningRate, config.WarmupSteps, config.Steps, config.MinLearningRateFraction);
        foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
        optimizer.zero_grad();
        Profile?.Lap("batch and noise");
        Tensor loss;
        if (compute is null)
        {
            loss = InjectFault(nn.functional.mse_loss(Model.call(xt, t, classes), FlowMatching.TargetVelocity(x0, eps)));
            Profile?.Lap("forward and loss");
            loss.backward();
            Profile?.Lap("backward");
        }
        else
        {
            using (no_grad())
            {
                for (var i = 0; i < parameters.Length; i++) computeParameters[i].copy_(parameters[i]);
            }
            compute.zero_grad();
            Profile?.Lap("weights to bf16");
            var prediction = compute.call(xt.to_type(ScalarType.BFloat16), t, classes).to_type(ScalarType.Float32);
            loss = InjectFault(nn.functional.mse_loss(prediction, FlowMatching.TargetVelocity(x0, eps)));
            Profile?.Lap("forward and loss");
            loss.backward();
            Profile?.Lap("backward");
            using (no_grad())
            {
                for (var i = 0; i < parameters.Length; i++)
                {
                    var source = computeParameters[i].grad;
                    if (source is null) continue;
                    if (parameters[i].grad is null) parameters[i].grad = zeros_like(parameters[i]).DetachFromDisposeScope();
                    parameters[i].grad!.copy_(source);
                }
            }
            Profile?.Lap("gradients to fp32");
        }
        var norm = config.GradClip > 0 ? nn.utils.clip_grad_norm_(parameters, config.GradClip)
            : GuardEnabled ? NonFiniteGuard.GradientNorm(parameters) : 0;
        var value = loss.item<float>();
        Profile?.Lap("clip and guard");
        if (!GuardEnabled || Guard.Record(Step, value, norm))
        {
            optimizer.step();
            Profile?.Lap("optimizer");
            UpdateEma();
            Profile?.Lap("ema");
        }
        else
        {
            optimizer.zero_grad();
            value = float.NaN;
        }
        lossHistory.Add(value);
        Step++;
        ImagesSeen += batch;
        return value;
    }

    private Tensor InjectFault(Tensor loss) => FaultNanFromStep is { } from && Step >= from ? loss * float.NaN : loss;

    private void UpdateEma()
    {
        // The usual warm-up of the EMA decay, so early checkpoints are not dominated by the random initialisation.
        var decay = Math.Min(config.EmaDecay, (1.0 + Step) / (10.0 + Step));
        using var _ = no_grad();
        for (var i = 0; i < parameters.Length; i++) emaParameters[i].mul_(decay).add_(parameters[i], 1 - decay);
    }

    /// <summary>Deterministic 64-bit mix of (seed, step) (SplitMix64), so nearby steps get unrelated streams.</summary>
    public static ulong StepSeed(int seed, long step)
    {
        var z = unchecked((ulong)seed * 0x9E3779B97F4A7C15UL + (ulong)step + 0x632BE59BD9B4E019UL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public const string ModelFile = "model.bin";
    public const string EmaFile = "ema.bin";
    public const string OptimizerFile = "optimizer.bin";

    public CheckpointRef SaveCheckpoint(CheckpointStore store) =>
        TrainingCheckpoint.Save(store, new TrainingState(Step, config.Seed, ImagesSeen, trainSeconds, lossHistory.ToArray()), config.KeepCheckpoints,
            [("model", Model), ("ema", Ema)], dir =>
        {
            Model.save(Path.Combine(dir, ModelFile));
            Ema.save(Path.Combine(dir, EmaFile));
            optimizer.save_state_dict(Path.Combine(dir, OptimizerFile));
        });

    /// <summary>Restores model, EMA, optimizer and counters from a checkpoint directory after verifying its hashes.</summary>
    public TrainingState LoadCheckpoint(string directory)
    {
        var state = TrainingCheckpoint.Load(directory, config.Seed, "model", dir =>
        {
            Model.load(Path.Combine(dir, ModelFile));
            Ema.load(Path.Combine(dir, EmaFile));
            optimizer.load_state_dict(Path.Combine(dir, OptimizerFile));
        });
        Step = state.Step;
        Guard.Reset();
        ImagesSeen = state.ImagesSeen;
        trainSeconds = state.TrainSeconds;
        lossHistory.Clear();
        lossHistory.AddRange(state.LossHistory);
        return state;
    }

    private static void CopyWeights(nn.Module from, nn.Module to)
    {
        using var _ = no_grad();
        var source = from.parameters().ToArray();
        var target = to.parameters().ToArray();
        for (var i = 0; i < source.Length; i++) target[i].copy_(source[i]);
    }

    public void Dispose()
    {
        optimizer.Dispose();
        compute?.Dispose();
        Model.Dispose();
        Ema.Dispose();
        images.Dispose();
        labels.Dispose();
    }
}
