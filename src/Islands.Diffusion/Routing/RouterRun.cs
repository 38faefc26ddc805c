using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Data;
using Islands.Diffusion.IO;
using Islands.Diffusion.Training;

namespace Islands.Diffusion.Routing;

public sealed record RouterTrainingSummary(string RunDirectory, long Step, long TotalSteps, bool Completed, bool Resumed, float FinalLoss,
    double ImagesPerSecond, string? LastCheckpoint, IReadOnlyList<RouterBandReport> HeldOut);

/// <summary>A router training run on disk (config.json + checkpoints/), resumable like an expert run.</summary>
public static class RouterRun
{
    public static RouterTrainingSummary Execute(RouterConfig config, string runDirectory, Action<TrainingProgress>? progress = null,
        Action<string>? log = null, CancellationToken cancel = default)
    {
        var trainer = TrainingJob.OpenRouter(config, runDirectory);
        try
        {
            return Execute(ref trainer, config, runDirectory, progress, log, cancel);
        }
        finally
        {
            trainer.Dispose();
        }
    }

    /// <summary>The loop; non-finite steps, rollbacks and divergence work as in <see cref="TrainingRun"/>.</summary>
    private static RouterTrainingSummary Execute(ref RouterTrainer trainer, RouterConfig config, string runDirectory, Action<TrainingProgress>? progress,
        Action<string>? log, CancellationToken cancel)
    {
        var budget = new RollbackBudget("router", config.MaxRollbacks);
        var store = trainer.Checkpoints;
        var skipped = new List<CheckpointException>();
        var newest = store.NewestValid(skipped);
        foreach (var s in skipped) log?.Invoke($"skipping corrupt checkpoint: {s.Message}");
        if (newest is { } found)
        {
            trainer.LoadCheckpoint(found.Directory);
            log?.Invoke($"resuming router from step {trainer.Step}");
        }
        CheckpointRef? last = null;
        var loss = float.NaN;
        while (trainer.Step < config.Steps && !cancel.IsCancellationRequested)
        {
            var before = trainer.TrainSeconds;
            var stepBefore = trainer.Step;
            var untilCheckpoint = config.CheckpointEvery - (int)(trainer.Step % config.CheckpointEvery);
            loss = trainer.Train(Math.Min(50, untilCheckpoint), cancel);
            var rate = (trainer.Step - stepBefore) * config.BatchSize / Math.Max(1e-9, trainer.TrainSeconds - before);
            (string Reason, long FailedAt)? trouble = Rollback.Needed(trainer, "router");
            if (trouble is null && trainer.Guard.ConsecutiveBadSteps == 0 && (trainer.Step % config.CheckpointEvery == 0 || trainer.Step == config.Steps))
            {
                try
                {
                    last = trainer.SaveCheckpoint(store);
                    budget.Committed(last.Step);
                }
                catch (NonFiniteTensorException e)
                {
                    trouble = (e.Message, trainer.Step);
                }
            }
            if (trouble is null && trainer.Step >= config.Steps && trainer.Guard.ConsecutiveBadSteps > 0)
                trouble = (trainer.Guard.Describe("router") + " at the end of the run", trainer.Guard.StreakStartedAt ?? trainer.Step);
            progress?.Invoke(new TrainingProgress(trainer.Step, config.Steps, loss, rate, last));
            if (trouble is { } t)
            {
                trainer = Rollback.ToLastGood(trainer, budget, t.Reason, t.FailedAt, () => TrainingJob.OpenRouter(config, runDirectory), log);
                store = trainer.Checkpoints;
                last = null;
            }
        }
        if (cancel.IsCancellationRequested && trainer.Guard.ConsecutiveBadSteps == 0 && (last is null || last.Step != trainer.Step)) last = trainer.SaveCheckpoint(store);
        var report = trainer.Evaluate();
        var history = trainer.LossHistory;
        return new RouterTrainingSummary(runDirectory, trainer.Step, config.Steps, trainer.Step >= config.Steps, newest is not null,
            TrainingCheckpoint.RecentLoss(history) ?? float.NaN, trainer.TrainSeconds > 0 ? trainer.Step * config.BatchSize / trainer.TrainSeconds : 0,
            last?.Directory ?? newest?.Directory, report);
    }

    /// <summary>Loads a router run's newest verified checkpoint.</summary>
    public static (RouterNet Router, RouterConfig Config, long Step) Load(string runDirectory, Action<string>? warn = null)
    {
        var configPath = Path.Combine(runDirectory, RunDirectory.ConfigFile);
        if (!File.Exists(configPath)) throw new IslandsException($"{configPath}: not a router run directory (config.json is missing)");
        var config = Json.Read<RouterConfig>(configPath);
        config.ThrowIfInvalid();
        var skipped = new List<CheckpointException>();
        var newest = new CheckpointStore(runDirectory).NewestValid(skipped) ?? throw new CheckpointException(runDirectory, "no committed router checkpoint that verifies");
        foreach (var s in skipped) warn?.Invoke($"skipping corrupt checkpoint: {s.Message}");
        var manifest = Json.Read<DatasetManifest>(Path.Combine(config.DataDirectory, DatasetManifest.FileName));
        var router = new RouterNet(manifest.ImageBytes, config.ExpertCount, config.Hidden, config.TimeEmbeddingDim, config.ClassCount);
        router.load(Path.Combine(newest.Directory, RouterTrainer.WeightsFile));
        router.eval();
        return (router, config, newest.Manifest.Step);
    }
}
