using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Data;
using Islands.Diffusion.IO;
using Islands.Diffusion.Training;

namespace Islands.Diffusion.Routing;

public sealed record RouterTrainingSummary(string RunDirectory, long Step, long TotalSteps, bool Completed, bool Resumed, float FinalLoss,
    double ImagesPerSecond, string? LastCheckpoint, IReadOnlyList<RouterBandReport> HeldOut, IReadOnlyList<RouterBandReport> HeldOutDegraded);

/// <summary>A router training run on disk (config.json + checkpoints/), resumable like an expert run.</summary>
public static class RouterRun
{
    /// <summary>Trains through <see cref="TrainingLoop"/>; non-finite steps, rollbacks and divergence work as for an expert.</summary>
    public static RouterTrainingSummary Execute(RouterConfig config, string runDirectory, Action<TrainingProgress>? progress = null,
        Action<string>? log = null, CancellationToken cancel = default)
    {
        var run = TrainingLoop.Run(() => TrainingJob.OpenRouter(config, runDirectory), "router", 50, progress, log, cancel);
        using var trainer = run.Trainer;
        var report = trainer.Evaluate();
        return new RouterTrainingSummary(runDirectory, trainer.Step, config.Steps, trainer.Step >= config.Steps, run.ResumedCheckpoint is not null,
            TrainingCheckpoint.RecentLoss(trainer.LossHistory) ?? float.NaN,
            trainer.TrainSeconds > 0 ? trainer.Step * config.BatchSize / trainer.TrainSeconds : 0,
            run.LastCommitted?.Directory ?? run.ResumedCheckpoint, report, trainer.EvaluateDegraded());
    }

    /// <summary>Loads a router run's newest verified checkpoint.</summary>
    public static (RouterNet Router, RouterConfig Config, long Step) Load(string runDirectory, Action<string>? warn = null)
    {
        var configPath = Path.Combine(runDirectory, RunDirectory.ConfigFile);
        if (!File.Exists(configPath)) throw new IslandsException($"{configPath}: not a router run directory (config.json is missing)");
        var config = Json.Read<RouterConfig>(configPath);
        config.ThrowIfInvalid();
        var skipped = new List<CheckpointException>();
        var newest = new CheckpointStore(runDirectory).NewestValid(skipped)
            ?? throw new CheckpointException(runDirectory, "no committed router checkpoint that verifies");
        foreach (var s in skipped) warn?.Invoke($"skipping corrupt checkpoint: {s.Message}");
        var manifest = Json.Read<DatasetManifest>(Path.Combine(config.DataDirectory, DatasetManifest.FileName));
        var router = RouterNet.For(manifest.ImageBytes, config);
        router.load(Path.Combine(newest.Directory, RouterTrainer.WeightsFile));
        router.eval();
        return (router, config, newest.Manifest.Step);
    }
}
