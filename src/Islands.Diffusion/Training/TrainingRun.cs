using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Configs;
using Islands.Diffusion.Data;
using Islands.Diffusion.Partitioning;
using static TorchSharp.torch;

namespace Islands.Diffusion.Training;

public sealed record TrainingProgress(long Step, long TotalSteps, float Loss, double ImagesPerSecond, CheckpointRef? LastCheckpoint);

public sealed record TrainingSummary(string RunDirectory, long Step, long TotalSteps, bool Completed, bool Resumed, long ResumedFromStep,
    float FinalLoss, double ImagesPerSecond, long TrainImages, string? LastCheckpoint, IReadOnlyList<string> SkippedCheckpoints,
    long BadSteps = 0, int Rollbacks = 0);

/// <summary>
/// One expert (or monolith) training run from start or resume to completion through <see cref="TrainingLoop"/>: freezes
/// the config, selects the partition's images, resumes from the newest verified checkpoint, trains in chunks and commits
/// checkpoints. Non-finite steps are skipped by the trainer; after Config.MaxConsecutiveBadSteps in a row (or a
/// checkpoint refused for a non-finite weight) the run rolls back to its newest good checkpoint, and after
/// Config.MaxRollbacks rollbacks without progress it throws <see cref="TrainingDivergedException"/>.
/// </summary>
public static class TrainingRun
{
    public static TrainingSummary Execute(TrainConfig config, string runDirectory, Action<TrainingProgress>? progress = null,
        Action<string>? log = null, CancellationToken cancel = default, Device? device = null)
    {
        var job = TrainingJob.ForExpert(config).Name;
        var chunk = Math.Max(1, Math.Min(config.CheckpointEvery, 10));
        var run = TrainingLoop.Run(() => TrainingJob.OpenExpert(config, runDirectory, log, device), job, chunk, progress, log, cancel);
        using var trainer = run.Trainer;
        var finalLoss = TrainingCheckpoint.RecentLoss(trainer.LossHistory) ?? float.NaN;
        var overall = trainer.TrainSeconds > 0 ? trainer.ImagesSeen / trainer.TrainSeconds : 0;
        return new TrainingSummary(runDirectory, trainer.Step, config.Steps, trainer.Step >= config.Steps, run.ResumedCheckpoint is not null,
            run.ResumedFromStep, finalLoss, overall, trainer.TrainImageCount, run.LastCommitted?.Directory ?? run.ResumedCheckpoint,
            run.SkippedCheckpoints, trainer.Guard.BadSteps,
            run.Rollbacks);
    }

    /// <summary>The images an expert trains on: its partition's members, or all training images for the monolith.</summary>
    public static (Tensor Images, Tensor Labels) SelectTrainingImages(CanonicalDataset data, TrainConfig config)
    {
        var train = data.Train;
        if (config.PartitionsFile is not null)
        {
            var partitions = PartitionFile.Load(config.PartitionsFile);
            if (partitions.Assignments.Length != train.Count)
                throw new ConfigException("partitionsFile",
                    $"{config.PartitionsFile} assigns {partitions.Assignments.Length} images but {data.Directory} has {train.Count} training images");
            train = train.Subset(partitions.Members(config.Expert!.Value));
        }
        var model = config.ModelOrDefault;
        if (model.Height != data.Manifest.Height || model.Width != data.Manifest.Width || model.ImageChannels != data.Manifest.Channels)
            throw new ConfigException("model",
                $"the model expects {model.ImageChannels}x{model.Height}x{model.Width} images " +
                $"but {data.Directory} holds {data.Manifest.Channels}x{data.Manifest.Height}x{data.Manifest.Width}");
        if (config.ModelOrDefault.ClassCount < data.ClassCount)
            throw new ConfigException("model.classCount", $"{config.ModelOrDefault.ClassCount} is less than the dataset's {data.ClassCount} classes");
        return (ImageTensors.ToTensor(train), ImageTensors.Labels(train));
    }
}
