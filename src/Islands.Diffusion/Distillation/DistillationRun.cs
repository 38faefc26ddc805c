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

/// <summary>What a distillation run produced: its images (grid.png), and their statistics beside real images of the class.</summary>
/// <param name="Real">The same statistics on the test split's images of the target class, when the experts' dataset is readable here.</param>
/// <param name="Translation">For a translation: the distilled images and SDEdit at each strength, against the inputs.</param>
public sealed record DistillationSummary(string RunDirectory, string Method, string Task, int TargetClass, int? SourceClass, int? InputClass,
    bool DegradedSource,
    long Step, long TotalSteps, bool Completed, bool Resumed, float FinalDirection, double SecondsPerStep, string Grid, ImageStats Distilled,
    ImageStats? Real, ClassifierScores? Scores, IReadOnlyList<Faithfulness> Translation);

/// <summary>A distillation run on disk (config.json, checkpoints/, grid.png, summary.json), resumable like a training run.</summary>
public static class DistillationRun
{
    public const string GridFile = "grid.png";
    public const string SummaryFile = "summary.json";

    /// <param name="evaluate">Score with the project's classifier (trained once per dataset and cached beside it).</param>
    /// <param name="sdeditStrengths">For a translation, the SDEdit strengths to compare with (guided by sdeditGuidance).</param>
    public static DistillationSummary Execute(DistillConfig config, string runDirectory, Action<TrainingProgress>? progress = null,
        Action<string>? log = null, CancellationToken cancel = default, bool evaluate = true, IReadOnlyList<double>? sdeditStrengths = null,
        double sdeditGuidance = 3)
    {
        var method = DistillMethod.For(config.Job);
        var run = TrainingLoop.Run(() => (DistillationTrainer)method.Open(config, runDirectory, log), config.Job, method.ChunkSteps(config),
            progress, log, cancel);
        using var trainer = run.Trainer;
        using var images = trainer.Images();
        var grid = Save(Path.Combine(runDirectory, GridFile), images);
        var data = DistillationInputs.Dataset(config.Store);
        using var evaluator = evaluate && data is not null ? Evaluator.ForDataset(data, log: log) : null;
        var translation = new List<Faithfulness>();
        if (config.Task == "translate" && trainer.Step >= config.Steps)
        {
            using var inputs = DistillationInputs.TestImages(config);
            Save(Path.Combine(runDirectory, "inputs.png"), inputs);
            translation.Add(Compare("distilled", null, inputs, images, config.TargetClass, evaluator, grid));
            using var prior = EnsemblePrior.Load(config.Store, config.Strategy);
            foreach (var strength in sdeditStrengths ?? [])
            {
                using var edited = Sdedit.Run(prior.Ensemble.Field(sdeditGuidance), inputs, config.TargetClass, strength, 20, config.Seed);
                var name = $"sdedit-{strength.ToString("0.00", System.Globalization.CultureInfo.InvariantCulture)}.png";
                var path = Save(Path.Combine(runDirectory, name), edited);
                translation.Add(Compare("sdedit", strength, inputs, edited, config.TargetClass, evaluator, path));
            }
        }
        var scores = evaluator is null ? null : Score(evaluator, images, config);
        var summary = new DistillationSummary(runDirectory, config.Job, config.Task, config.TargetClass, config.SourceClass, config.InputClass,
            config.DegradedSource,
            trainer.Step, config.Steps, trainer.Step >= config.Steps, run.ResumedCheckpoint is not null,
            TrainingCheckpoint.RecentLoss(trainer.LossHistory) ?? float.NaN,
            trainer.Step > run.ResumedFromStep ? trainer.TrainSeconds / (trainer.Step - run.ResumedFromStep) : 0, grid, Stats(images),
            data is null ? null : RealStats(data, config.TargetClass), scores, translation);
        Json.WriteAtomic(Path.Combine(runDirectory, SummaryFile), summary);
        return summary;
    }

    public static ImageStats Stats(Tensor images) =>
        new((int)images.shape[0], ImageStatistics.Saturation(images), ImageStatistics.LaplacianVariance(images));

    private static string Save(string path, Tensor images)
    {
        var (n, c, h, w) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3]);
        ImageGrid.SavePng(path, ImageTensors.ToBytes(images), (int)n, (int)c, (int)h, (int)w, columns: (int)Math.Ceiling(Math.Sqrt(n)));
        return path;
    }

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
