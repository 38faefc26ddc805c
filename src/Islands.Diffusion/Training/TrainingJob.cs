using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Configs;
using Islands.Diffusion.Data;
using Islands.Diffusion.IO;
using Islands.Diffusion.Methods;
using Islands.Diffusion.Partitioning;
using Islands.Diffusion.Routing;
using static TorchSharp.torch;

namespace Islands.Diffusion.Training;

/// <summary>
/// What an island (or a train command) trains: a registered <see cref="TrainingMethod"/> with its typed config, under
/// the job's name (expert:K, monolith, router, ...). Opening a job freezes its config in the run directory (refusing a
/// run directory that holds different settings) and builds its trainer; resuming from a checkpoint is the caller's choice.
/// </summary>
public sealed record TrainingJob(string Name, TrainingMethod Method, IMethodConfig Config)
{
    public long TotalSteps => Config.Steps;
    public int BatchSize => Config.BatchSize;
    public int CheckpointEvery => Config.CheckpointEvery;
    public int MaxRollbacks => Config.MaxRollbacks;

    public static TrainingJob ForExpert(TrainConfig config) => MethodRegistry.Default.JobFor(config);

    public static TrainingJob ForRouter(RouterConfig config) => MethodRegistry.Default.JobFor(config);

    public void ThrowIfInvalid() => ConfigException.ThrowFirst(Config.Validate());

    public IChunkedTrainer Open(string runDirectory, Action<string>? log = null, Device? device = null)
        => Method.Open(Config, runDirectory, log, device);

    public static ExpertTrainer OpenExpert(TrainConfig config, string runDirectory, Action<string>? log = null, Device? device = null)
    {
        config.ThrowIfInvalid();
        var data = CanonicalDataset.Load(config.DataDirectory);
        config = config.ForData(data.Manifest);
        config.ThrowIfInvalid();
        var run = new RunDirectory(runDirectory);
        if (run.Exists)
        {
            var frozen = run.LoadConfig();
            var differences = frozen.DifferencesForResume(config).ToList();
            if (differences.Count > 0)
                throw new ConfigException("runDirectory",
                    $"{runDirectory} holds a run with different settings: {string.Join(", ", differences)}; " +
                    "resume with the same settings, or train into a new run directory");
            if (frozen.Steps != config.Steps) log?.Invoke($"extending the run from {frozen.Steps} to {config.Steps} steps");
        }
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
            var resumable = frozen with
            {
                Steps = config.Steps, MaxConsecutiveBadSteps = config.MaxConsecutiveBadSteps, MaxRollbacks = config.MaxRollbacks,
            };
            if (resumable != config)
                throw new ConfigException("runDirectory",
                    $"{runDirectory} holds a router run with different settings; resume with the same settings, or train into a new run directory");
        }
        var data = CanonicalDataset.Load(config.DataDirectory);
        var partitions = PartitionFile.Load(config.PartitionsFile);
        if (partitions.K != config.ExpertCount) throw new ConfigException("partitionsFile",
            $"has K={partitions.K} but the router was configured for {config.ExpertCount}");
        Directory.CreateDirectory(runDirectory);
        Json.WriteAtomic(configPath, config);
        return new RouterTrainer(config, ImageTensors.ToTensor(data.Train), ImageTensors.Labels(data.Train), partitions.Assignments,
            new CheckpointStore(runDirectory));
    }
}
