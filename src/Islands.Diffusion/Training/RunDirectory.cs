using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Configs;
using Islands.Diffusion.IO;
using Islands.Diffusion.Modules;

namespace Islands.Diffusion.Training;

/// <summary>
/// A training run on disk: the frozen <c>config.json</c> and its <c>checkpoints/</c>. Every later command (resume,
/// sample, eval) rebuilds the model from these files alone.
/// </summary>
public sealed class RunDirectory(string path)
{
    public const string ConfigFile = "config.json";
    public string Path { get; } = path;
    public string ConfigPath => System.IO.Path.Combine(Path, ConfigFile);
    public CheckpointStore Checkpoints { get; } = new(path);
    public bool Exists => File.Exists(ConfigPath);

    public TrainConfig LoadConfig()
    {
        if (!Directory.Exists(Path)) throw new IslandsException($"{Path}: run directory not found");
        if (!File.Exists(ConfigPath)) throw new IslandsException($"{ConfigPath}: not a run directory (config.json is missing)");
        var config = Json.Read<TrainConfig>(ConfigPath);
        var errors = config.Validate().ToList();
        if (errors.Count > 0) throw new IslandsException($"{ConfigPath}: {errors[0]}");
        return config;
    }

    public void SaveConfig(TrainConfig config) => Json.WriteAtomic(ConfigPath, config);

    /// <summary>Builds the run's model and loads the newest checkpoint that verifies (EMA weights by default).</summary>
    public (UNet Model, long Step, string Checkpoint) LoadModel(bool ema = true, Action<string>? warn = null)
    {
        var config = LoadConfig();
        var skipped = new List<CheckpointException>();
        var newest = Checkpoints.NewestValid(skipped);
        foreach (var s in skipped) warn?.Invoke($"skipping corrupt checkpoint: {s.Message}");
        if (newest is null) throw new CheckpointException(Checkpoints.Root, "no committed checkpoint that verifies; train first");
        return (Load(config, newest.Value.Directory, ema), newest.Value.Manifest.Step, newest.Value.Directory);
    }

    /// <summary>Builds the run's model from the checkpoint of one step, after verifying that checkpoint's hashes.</summary>
    public UNet LoadModelAt(long step, bool ema = true)
    {
        var config = LoadConfig();
        var found = Checkpoints.List().Where(c => c.Step == step).Select(c => c.Directory).FirstOrDefault()
            ?? throw new CheckpointException(Checkpoints.Root, $"holds no checkpoint of step {step}");
        CheckpointStore.Verify(found);
        return Load(config, found, ema);
    }

    private static UNet Load(TrainConfig config, string checkpoint, bool ema)
    {
        var model = config.ModelOrDefault.Build();
        try
        {
            model.load(System.IO.Path.Combine(checkpoint, ema ? ExpertTrainer.EmaFile : ExpertTrainer.ModelFile));
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or KeyNotFoundException)
        {
            model.Dispose();
            throw new CheckpointException(checkpoint, $"weights do not fit the model in config.json ({e.Message})", e);
        }
        model.eval();
        return model;
    }
}
