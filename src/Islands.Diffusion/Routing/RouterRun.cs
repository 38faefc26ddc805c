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
        using var trainer = TrainingJob.OpenRouter(config, runDirectory);
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
            if (trainer.Step % config.CheckpointEvery == 0 || trainer.Step == config.Steps) last = trainer.SaveCheckpoint(store);
            progress?.Invoke(new TrainingProgress(trainer.Step, config.Steps, loss, rate, last));
        }
        if (cancel.IsCancellationRequested && (last is null || last.Step != trainer.Step)) last = trainer.SaveCheckpoint(store);
        var report = trainer.Evaluate();
        var history = trainer.LossHistory;
        return new RouterTrainingSummary(runDirectory, trainer.Step, config.Steps, trainer.Step >= config.Steps, newest is not null,
            history.Count == 0 ? float.NaN : history.TakeLast(50).Average(), trainer.TrainSeconds > 0 ? trainer.Step * config.BatchSize / trainer.TrainSeconds : 0,
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
