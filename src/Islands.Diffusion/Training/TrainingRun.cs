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
/// One expert (or monolith) training run from start or resume to completion: freezes the config, selects the
/// partition's images, resumes from the newest verified checkpoint, trains in chunks and commits checkpoints.
/// Cancellation commits a checkpoint before returning, so an interrupted run loses nothing. Non-finite steps are skipped
/// by the trainer; after Config.MaxConsecutiveBadSteps in a row (or a checkpoint refused for a non-finite weight) the run
/// rolls back to its newest good checkpoint, and after Config.MaxRollbacks rollbacks without progress it throws
/// <see cref="TrainingDivergedException"/>. No checkpoint is committed in the middle of a streak of bad steps.
/// </summary>
public static class TrainingRun
{
    public static TrainingSummary Execute(TrainConfig config, string runDirectory, Action<TrainingProgress>? progress = null,
        Action<string>? log = null, CancellationToken cancel = default, Device? device = null)
    {
        var trainer = TrainingJob.OpenExpert(config, runDirectory, log, device);
        try
        {
            return Execute(ref trainer, config, runDirectory, progress, log, cancel, device);
        }
        finally
        {
            trainer.Dispose();
        }
    }

    private static TrainingSummary Execute(ref ExpertTrainer trainer, TrainConfig config, string runDirectory, Action<TrainingProgress>? progress,
        Action<string>? log, CancellationToken cancel, Device? device)
    {
        var job = TrainingJob.ForExpert(config).Name;
        var budget = new RollbackBudget(job, config.MaxRollbacks);
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
            (string Reason, long FailedAt)? trouble = Rollback.Needed(trainer, job);
            if (trouble is null && (trainer.Step % config.CheckpointEvery == 0 || trainer.Step == config.Steps))
            {
                if (trainer.Guard.ConsecutiveBadSteps > 0)
                    log?.Invoke($"not committing step {trainer.Step}: {trainer.Guard.ConsecutiveBadSteps} bad step(s) in a row");
                else
                {
                    try
                    {
                        last = trainer.Commit();
                        budget.Committed(last.Step);
                    }
                    catch (NonFiniteTensorException e)
                    {
                        trouble = (e.Message, trainer.Step);
                    }
                }
            }
            if (trouble is null && trainer.Step >= config.Steps && trainer.Guard.ConsecutiveBadSteps > 0)
                trouble = (trainer.Guard.Describe(job) + " at the end of the run", trainer.Guard.StreakStartedAt ?? trainer.Step);
            progress?.Invoke(new TrainingProgress(trainer.Step, config.Steps, lastLoss, rate, last));
            if (trouble is { } t)
            {
                trainer = Rollback.ToLastGood(trainer, budget, t.Reason, t.FailedAt, () => TrainingJob.OpenExpert(config, runDirectory, log, device), log);
                last = null;
            }
        }
        if (cancel.IsCancellationRequested && trainer.Step > resumedFrom && trainer.Guard.ConsecutiveBadSteps == 0 && (last is null || last.Step != trainer.Step))
        {
            last = trainer.Commit();
            log?.Invoke($"interrupted: committed a checkpoint at step {trainer.Step}; rerun the same command to resume");
        }
        var history = trainer.LossHistory;
        var finalLoss = TrainingCheckpoint.RecentLoss(history) ?? float.NaN;
        var overall = trainer.TrainSeconds > 0 ? trainer.ImagesSeen / trainer.TrainSeconds : 0;
        return new TrainingSummary(runDirectory, trainer.Step, config.Steps, trainer.Step >= config.Steps, newest is not null, resumedFrom,
            finalLoss, overall, trainCount, last?.Directory ?? newest?.Directory, skipped.Select(s => s.Message).ToList(), trainer.Guard.BadSteps,
            budget.TotalRollbacks);
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
