using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Configs;
using Islands.Diffusion.Data;
using Islands.Diffusion.Partitioning;
using static TorchSharp.torch;

namespace Islands.Diffusion.Training;

public sealed record TrainingProgress(long Step, long TotalSteps, float Loss, double ImagesPerSecond, CheckpointRef? LastCheckpoint);

public sealed record TrainingSummary(string RunDirectory, long Step, long TotalSteps, bool Completed, bool Resumed, long ResumedFromStep,
    float FinalLoss, double ImagesPerSecond, long TrainImages, string? LastCheckpoint, IReadOnlyList<string> SkippedCheckpoints);

/// <summary>
/// One expert (or monolith) training run from start or resume to completion: freezes the config, selects the
/// partition's images, resumes from the newest verified checkpoint, trains in chunks and commits checkpoints.
/// Cancellation commits a checkpoint before returning, so an interrupted run loses nothing.
/// </summary>
public static class TrainingRun
{
    public static TrainingSummary Execute(TrainConfig config, string runDirectory, Action<TrainingProgress>? progress = null,
        Action<string>? log = null, CancellationToken cancel = default, Device? device = null)
    {
        using var trainer = TrainingJob.OpenExpert(config, runDirectory, log, device);
        var trainCount = trainer.TrainImageCount;
        var skipped = new List<CheckpointException>();
        var newest = trainer.Checkpoints.NewestValid(skipped);
        foreach (var s in skipped) log?.Invoke($"skipping corrupt checkpoint: {s.Message}");
        long resumedFrom = 0;
        if (newest is { } found)
        {
            trainer.LoadCheckpoint(found.Directory);
            resumedFrom = trainer.Step;
            log?.Invoke($"resuming from step {trainer.Step} ({found.Directory})");
        }

        CheckpointRef? last = null;
        var chunk = Math.Max(1, Math.Min(config.CheckpointEvery, 10));
        var lastLoss = float.NaN;
        while (trainer.Step < config.Steps && !cancel.IsCancellationRequested)
        {
            var untilCheckpoint = config.CheckpointEvery - (int)(trainer.Step % config.CheckpointEvery);
            var before = trainer.TrainSeconds;
            var stepBefore = trainer.Step;
            lastLoss = trainer.Train(Math.Min(chunk, untilCheckpoint), cancel);
            var rate = (trainer.Step - stepBefore) * config.BatchSize / Math.Max(1e-9, trainer.TrainSeconds - before);
            if (trainer.Step % config.CheckpointEvery == 0 || trainer.Step == config.Steps) last = trainer.Commit();
            progress?.Invoke(new TrainingProgress(trainer.Step, config.Steps, lastLoss, rate, last));
        }
        if (cancel.IsCancellationRequested && trainer.Step > resumedFrom && (last is null || last.Step != trainer.Step))
        {
            last = trainer.Commit();
            log?.Invoke($"interrupted: committed a checkpoint at step {trainer.Step}; rerun the same command to resume");
        }
        var history = trainer.LossHistory;
        var finalLoss = history.Count == 0 ? float.NaN : history.TakeLast(Math.Min(50, history.Count)).Average();
        var overall = trainer.TrainSeconds > 0 ? trainer.ImagesSeen / trainer.TrainSeconds : 0;
        return new TrainingSummary(runDirectory, trainer.Step, config.Steps, trainer.Step >= config.Steps, newest is not null, resumedFrom,
            finalLoss, overall, trainCount, last?.Directory ?? newest?.Directory, skipped.Select(s => s.Message).ToList());
    }

    /// <summary>The images an expert trains on: its partition's members, or all training images for the monolith.</summary>
    public static (Tensor Images, Tensor Labels) SelectTrainingImages(CanonicalDataset data, TrainConfig config)
    {
        var train = data.Train;
        if (config.PartitionsFile is not null)
        {
            var partitions = PartitionFile.Load(config.PartitionsFile);
            if (partitions.Assignments.Length != train.Count)
                throw new ConfigException("--partitions", $"{config.PartitionsFile} assigns {partitions.Assignments.Length} images but {data.Directory} has {train.Count} training images");
            train = train.Subset(partitions.Members(config.Expert!.Value));
        }
        if (config.ModelOrDefault.ImageSize != data.Manifest.Height || config.ModelOrDefault.ImageChannels != data.Manifest.Channels)
            throw new ConfigException("model", $"the model expects {config.ModelOrDefault.ImageChannels}x{config.ModelOrDefault.ImageSize}x{config.ModelOrDefault.ImageSize} images but {data.Directory} holds {data.Manifest.Channels}x{data.Manifest.Height}x{data.Manifest.Width}");
        if (config.ModelOrDefault.ClassCount < data.ClassCount)
            throw new ConfigException("model.classCount", $"{config.ModelOrDefault.ClassCount} is less than the dataset's {data.ClassCount} classes");
        return (ImageTensors.ToTensor(train), ImageTensors.Labels(train));
    }
}
