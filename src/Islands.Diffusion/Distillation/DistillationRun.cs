using Islands.Diffusion.Data;
using Islands.Diffusion.Imaging;
using Islands.Diffusion.IO;
using Islands.Diffusion.Metrics;
using Islands.Diffusion.Training;
using static TorchSharp.torch;

namespace Islands.Diffusion.Distillation;

/// <summary>Saturation and smoothness of a set of images (see <see cref="ImageStatistics"/>).</summary>
public sealed record ImageStats(int Count, double Saturation, double LaplacianVariance);

/// <summary>The project's classifier on a set of images: the wanted class's probability (and, for an illusion, the turned
/// view's), FID and KID.</summary>
public sealed record ClassifierScores(double TargetProbability, double? TurnedProbability, double Fid, double Kid);

/// <summary>How far a translation's results are from its inputs (RMSE, SSIM) and how much they look like the target.</summary>
public sealed record Faithfulness(string Method, double? Strength, double Rmse, double Ssim, double? TargetProbability, string Grid);

/// <summary>One frame of a run's trajectory: the images after Step steps as a PNG grid, and the stage the step is in.</summary>
public sealed record DistillationFrame(long Step, long Steps, string Stage, float Direction, byte[] Png);

/// <summary>How a run is scored, what it compares with, which prior it asks, and who watches its frames.</summary>
public sealed record DistillationOptions
{
    /// <summary>Score with the project's classifier (trained once per dataset and cached beside it).</summary>
    public bool Evaluate { get; init; } = true;
    /// <summary>The classifier's training epochs and images (null: the whole training split); it is cached per setting.</summary>
    public int EvaluatorEpochs { get; init; } = 3;
    public int? EvaluatorImages { get; init; }
    /// <summary>For a translation, the SDEdit strengths to compare with (guided by SdeditGuidance).</summary>
    public IReadOnlyList<double> SdeditStrengths { get; init; } = [];
    public double SdeditGuidance { get; init; } = 3;
    /// <summary>The prior; by default the store's experts and router loaded here.</summary>
    public Func<IDistillationPrior>? Prior { get; init; }
    /// <summary>Told of every trajectory frame (one per chunk of steps), e.g. a served job's preview.</summary>
    public Action<DistillationFrame>? Frame { get; init; }
    /// <summary>Given the final images [Count, C, H, W] in [-1, 1] before they are disposed (an experiment scores them its own way).</summary>
    public Action<Tensor>? Finished { get; init; }
}

/// <summary>What a distillation run produced: its images (grid.png), and their statistics beside real images of the class.</summary>
/// <param name="Real">The same statistics on the test split's images of the target class, when the experts' dataset is readable here.</param>
/// <param name="Translation">For a translation: the distilled images and SDEdit at each strength, against the inputs.</param>
public sealed record DistillationSummary(string RunDirectory, string Method, string Task, int TargetClass, int? SourceClass, int? InputClass,
    bool DegradedSource,
    long Step, long TotalSteps, bool Completed, bool Resumed, float FinalDirection, double SecondsPerStep, string Grid, ImageStats Distilled,
    ImageStats? Real, ClassifierScores? Scores, IReadOnlyList<Faithfulness> Translation, string? Trajectory = null);

/// <summary>
/// A distillation run on disk (config.json, checkpoints/, trajectory/ frames, grid.png, trajectory.gif, summary.json),
/// resumable like a training run: the frames of steps already done stay, so a resumed run's GIF is whole.
/// </summary>
public static class DistillationRun
{
    public const string GridFile = "grid.png";
    public const string SummaryFile = "summary.json";
    public const string TrajectoryFile = "trajectory.gif";
    public const string FramesDirectory = "trajectory";
    public const int MaxGifFrames = 80;

    public static DistillationSummary Execute(DistillConfig config, string runDirectory, Action<TrainingProgress>? progress = null,
        Action<string>? log = null, CancellationToken cancel = default, DistillationOptions? options = null)
    {
        options ??= new DistillationOptions();
        var loadPrior = options.Prior ?? (() => EnsemblePrior.Load(config.Store, config.Strategy));
        var method = DistillMethod.For(config.Job);
        DistillationTrainer? current = null;
        var frames = Path.Combine(runDirectory, FramesDirectory);
        void Frame(long step, float direction)
        {
            using var now = current!.Images();
            var png = Encode(now);
            Directory.CreateDirectory(frames);
            AtomicFile.Write(FramePath(frames, step), stream => stream.Write(png));
            options.Frame?.Invoke(new DistillationFrame(step, config.Steps, config.StageAt(Math.Max(0, step - 1)), direction, png));
        }
        var run = TrainingLoop.Run(() =>
        {
            current = method.Open(config, runDirectory, loadPrior);
            // Opened, not yet restored: the images are the starting ones, the trajectory's first frame.
            if (!File.Exists(FramePath(frames, 0))) Frame(0, float.NaN);
            return current;
        }, config.Job, method.ChunkSteps(config), p =>
        {
            Frame(p.Step, p.Loss);
            progress?.Invoke(p);
        }, log, cancel);
        using var trainer = run.Trainer;
        using var images = trainer.Images();
        var grid = Save(Path.Combine(runDirectory, GridFile), images);
        string? trajectory = null;
        var framePaths = Directory.Exists(frames) ? Directory.GetFiles(frames, "step-*.png").Order(StringComparer.Ordinal).ToList() : [];
        // At most MaxGifFrames, evenly spread and always with the last: a long run's GIF stays small.
        if (framePaths.Count > MaxGifFrames)
            framePaths = [.. Enumerable.Range(0, MaxGifFrames).Select(i => framePaths[(int)((long)i * (framePaths.Count - 1) / (MaxGifFrames - 1))])];
        if (framePaths.Count > 0)
        {
            trajectory = Path.Combine(runDirectory, TrajectoryFile);
            ImageGrid.SaveGif(trajectory, [.. framePaths.Select(File.ReadAllBytes)]);
        }
        var data = DistillationInputs.Dataset(config.Store);
        // A cancelled run is only saved: no classifier training or SDEdit comparison stands between it and its caller.
        var stopped = cancel.IsCancellationRequested;
        using var evaluator = options.Evaluate && data is not null && !stopped ? Evaluator.ForDataset(data, options.EvaluatorEpochs, log: log, trainLimit: options.EvaluatorImages) : null;
        var translation = new List<Faithfulness>();
        if (config.Task == "translate" && trainer.Step >= config.Steps && !stopped)
        {
            using var inputs = DistillationInputs.TestImages(config);
            Save(Path.Combine(runDirectory, "inputs.png"), inputs);
            translation.Add(Compare("distilled", null, inputs, images, config.TargetClass, evaluator, grid));
            using var prior = options.SdeditStrengths.Count > 0 ? loadPrior() : null;
            foreach (var strength in options.SdeditStrengths)
            {
                using var edited = Sdedit.Run(prior!.Field(options.SdeditGuidance), inputs, config.TargetClass, strength, 20, config.Seed);
                var name = $"sdedit-{strength.ToString("0.00", System.Globalization.CultureInfo.InvariantCulture)}.png";
                var path = Save(Path.Combine(runDirectory, name), edited);
                translation.Add(Compare("sdedit", strength, inputs, edited, config.TargetClass, evaluator, path));
            }
        }
        var scores = evaluator is null ? null : Score(evaluator, images, config);
        options.Finished?.Invoke(images);
        var summary = new DistillationSummary(runDirectory, config.Job, config.Task, config.TargetClass, config.SourceClass, config.InputClass,
            config.DegradedSource,
            trainer.Step, config.Steps, trainer.Step >= config.Steps, run.ResumedCheckpoint is not null,
            TrainingCheckpoint.RecentLoss(trainer.LossHistory) ?? float.NaN,
            trainer.Step > run.ResumedFromStep ? trainer.TrainSeconds / (trainer.Step - run.ResumedFromStep) : 0, grid, Stats(images),
            data is null ? null : RealStats(data, config.TargetClass), scores, translation, trajectory);
        Json.WriteAtomic(Path.Combine(runDirectory, SummaryFile), summary);
        return summary;
    }

    public static ImageStats Stats(Tensor images) =>
        new((int)images.shape[0], ImageStatistics.Saturation(images), ImageStatistics.LaplacianVariance(images));

    private static string Save(string path, Tensor images)
    {
        var png = Encode(images);
        AtomicFile.Write(path, stream => stream.Write(png));
        return path;
    }

    /// <summary>The images as one PNG grid, √n columns wide.</summary>
    public static byte[] Encode(Tensor images)
    {
        var (n, c, h, w) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3]);
        return ImageGrid.EncodePng(ImageTensors.ToBytes(images), (int)n, (int)c, (int)h, (int)w, columns: (int)Math.Ceiling(Math.Sqrt(n)));
    }

    private static string FramePath(string frames, long step) =>
        Path.Combine(frames, $"step-{step.ToString("D7", System.Globalization.CultureInfo.InvariantCulture)}.png");

    private static ClassifierScores Score(Evaluator evaluator, Tensor images, DistillConfig config)
    {
        var quality = evaluator.Score(images);
        double? turned = null;
        if (config.IllusionClass is { } b)
        {
            using var flipped = images.flip(2, 3);
            turned = evaluator.ClassProbability(flipped, b);
        }
        return new ClassifierScores(evaluator.ClassProbability(images, config.TargetClass), turned, quality.Fid, quality.Kid);
    }

    private static Faithfulness Compare(string method, double? strength, Tensor inputs, Tensor results, int target, Evaluator? evaluator,
        string grid) =>
        new(method, strength, ImageStatistics.Rmse(inputs, results), ImageStatistics.Ssim(inputs, results),
            evaluator?.ClassProbability(results, target), grid);

    /// <summary>The target class's test images (at most 1000).</summary>
    private static ImageStats? RealStats(CanonicalDataset data, int cls)
    {
        var test = data.Test;
        var indices = Enumerable.Range(0, test.Count).Where(i => test.Labels[i] == cls).Take(1000).ToList();
        if (indices.Count == 0) return null;
        using var real = ImageTensors.ToTensor(test.Subset(indices));
        return Stats(real);
    }
}
