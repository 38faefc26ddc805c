using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Configs;
using Islands.Diffusion.Data;
using Islands.Diffusion.IO;
using Islands.Diffusion.Partitioning;
using Islands.Diffusion.Routing;
using static TorchSharp.torch;

namespace Islands.Diffusion.Training;

/// <summary>
/// What an island trains: one expert (or the monolith) from a <see cref="TrainConfig"/>, or the router from a
/// <see cref="RouterConfig"/>. Opening a job freezes its config in the run directory (refusing a run directory that holds
/// different settings) and builds its trainer; resuming from a checkpoint is the caller's choice.
/// </summary>
public sealed record TrainingJob(string Name, TrainConfig? Expert, RouterConfig? Router)
{
    public long TotalSteps => Expert?.Steps ?? Router!.Steps;
    public int BatchSize => Expert?.BatchSize ?? Router!.BatchSize;
    public int CheckpointEvery => Expert?.CheckpointEvery ?? Router!.CheckpointEvery;
    public int MaxRollbacks => Expert?.MaxRollbacks ?? Router!.MaxRollbacks;

    public static TrainingJob ForExpert(TrainConfig config) =>
        new(config.Expert is { } k ? $"expert:{k}" : config.Job, config, null);

    public static TrainingJob ForRouter(RouterConfig config) => new("router", null, config);

    public void ThrowIfInvalid()
    {
        if (Expert is not null) Expert.ThrowIfInvalid();
        else Router!.ThrowIfInvalid();
    }

    public IChunkedTrainer Open(string runDirectory, Action<string>? log = null, Device? device = null) =>
        Expert is not null ? OpenExpert(Expert, runDirectory, log, device) : OpenRouter(Router!, runDirectory);

    public static ExpertTrainer OpenExpert(TrainConfig config, string runDirectory, Action<string>? log = null, Device? device = null)
    {
        config.ThrowIfInvalid();
        var run = new RunDirectory(runDirectory);
        if (run.Exists)
        {
            var frozen = run.LoadConfig();
            var differences = frozen.DifferencesForResume(config).ToList();
            if (differences.Count > 0)
                throw new ConfigException("--out", $"{runDirectory} holds a run with different settings: {string.Join(", ", differences)}; use the same options to resume, or a new --out");
            if (frozen.Steps != config.Steps) log?.Invoke($"extending the run from {frozen.Steps} to {config.Steps} steps");
        }
        var data = CanonicalDataset.Load(config.DataDirectory);
        var (images, labels) = TrainingRun.SelectTrainingImages(data, config);
        Directory.CreateDirectory(runDirectory);
        run.SaveConfig(config);
        return new ExpertTrainer(config, images, labels, device, run.Checkpoints); // takes ownership of both tensors
    }

    public static RouterTrainer OpenRouter(RouterConfig config, string runDirectory)
    {
        config.ThrowIfInvalid();
        var configPath = Path.Combine(runDirectory, RunDirectory.ConfigFile);
        if (File.Exists(configPath))
        {
            var frozen = Json.Read<RouterConfig>(configPath);
            if (frozen with { Steps = config.Steps, MaxConsecutiveBadSteps = config.MaxConsecutiveBadSteps, MaxRollbacks = config.MaxRollbacks } != config)
                throw new ConfigException("--out", $"{runDirectory} holds a router run with different settings; use the same options to resume, or a new --out");
        }
        var data = CanonicalDataset.Load(config.DataDirectory);
        var partitions = PartitionFile.Load(config.PartitionsFile);
        if (partitions.K != config.ExpertCount) throw new ConfigException("--partitions", $"has K={partitions.K} but the router was configured for {config.ExpertCount}");
        Directory.CreateDirectory(runDirectory);
        Json.WriteAtomic(configPath, config);
        return new RouterTrainer(config, ImageTensors.ToTensor(data.Train), ImageTensors.Labels(data.Train), partitions.Assignments, new CheckpointStore(runDirectory));
    }
}
