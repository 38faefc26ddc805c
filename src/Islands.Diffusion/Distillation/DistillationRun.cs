using Islands.Diffusion.Data;
using Islands.Diffusion.Imaging;
using Islands.Diffusion.IO;
using Islands.Diffusion.Metrics;
using Islands.Diffusion.Serving;
using Islands.Diffusion.Training;
using static TorchSharp.torch;

namespace Islands.Diffusion.Distillation;

/// <summary>Saturation and smoothness of a set of images (see <see cref="ImageStatistics"/>).</summary>
public sealed record ImageStats(int Count, double Saturation, double LaplacianVariance);

/// <summary>What a distillation run produced: its images (grid.png), and their statistics beside real images of the class.</summary>
/// <param name="Real">The same statistics on the test split's images of the target class, when the experts' dataset is readable here.</param>
public sealed record DistillationSummary(string RunDirectory, string Method, int TargetClass, int? SourceClass, bool DegradedSource, long Step,
    long TotalSteps,
    bool Completed, bool Resumed, float FinalDirection, double SecondsPerStep, string Grid, ImageStats Distilled, ImageStats? Real);

/// <summary>A distillation run on disk (config.json, checkpoints/, grid.png, summary.json), resumable like a training run.</summary>
public static class DistillationRun
{
    public const string GridFile = "grid.png";
    public const string SummaryFile = "summary.json";

    public static DistillationSummary Execute(DistillConfig config, string runDirectory, Action<TrainingProgress>? progress = null,
        Action<string>? log = null, CancellationToken cancel = default)
    {
        var method = DistillMethod.For(config.Job);
        var run = TrainingLoop.Run(() => (DistillationTrainer)method.Open(config, runDirectory, log), config.Job, method.ChunkSteps(config),
            progress, log, cancel);
        using var trainer = run.Trainer;
        using var images = trainer.Images();
        var grid = Path.Combine(runDirectory, GridFile);
        var (c, h, w) = trainer.Shape;
        ImageGrid.SavePng(grid, ImageTensors.ToBytes(images), config.Count, (int)c, (int)h, (int)w, columns: (int)Math.Ceiling(Math.Sqrt(config.Count)));
        var summary = new DistillationSummary(runDirectory, config.Job, config.TargetClass, config.SourceClass, config.DegradedSource, trainer.Step,
            config.Steps,
            trainer.Step >= config.Steps, run.ResumedCheckpoint is not null, TrainingCheckpoint.RecentLoss(trainer.LossHistory) ?? float.NaN,
            trainer.Step > 0 ? trainer.TrainSeconds / Math.Max(1, trainer.Step - run.ResumedFromStep) : 0, grid,
            Stats(images), RealStats(config));
        Json.WriteAtomic(Path.Combine(runDirectory, SummaryFile), summary);
        return summary;
    }

    public static ImageStats Stats(Tensor images) =>
        new((int)images.shape[0], ImageStatistics.Saturation(images), ImageStatistics.LaplacianVariance(images));

    /// <summary>The target class's test images, read from the dataset the store's experts were trained on (null when it is not here).</summary>
    private static ImageStats? RealStats(DistillConfig config)
    {
        var expert = PublishedModels.Scan(config.Store).Experts.FirstOrDefault();
        if (expert is null) return null;
        var dataDirectory = new RunDirectory(expert.RunDirectory).LoadConfig().DataDirectory;
        if (!File.Exists(Path.Combine(dataDirectory, DatasetManifest.FileName))) return null;
        var test = CanonicalDataset.Load(dataDirectory, verifyHashes: false).Test;
        var indices = Enumerable.Range(0, test.Count).Where(i => test.Labels[i] == config.TargetClass).Take(1000).ToList();
        if (indices.Count == 0) return null;
        using var real = ImageTensors.ToTensor(test.Subset(indices));
        return Stats(real);
    }
}
