using Islands.Diffusion.Training;
using static TorchSharp.torch;

namespace Islands.Diffusion.Methods;

/// <summary>What the one training loop needs from any method's typed config; the rest of the config is the method's own.</summary>
public interface IMethodConfig
{
    /// <summary>The registered method this config belongs to (frozen in config.json as "job").</summary>
    string Job { get; }
    int Steps { get; }
    int BatchSize { get; }
    int CheckpointEvery { get; }
    int MaxRollbacks { get; }

    /// <summary>"field: problem" for each invalid setting.</summary>
    IEnumerable<string> Validate();
}

/// <summary>
/// A trainable method in the manner of nerfstudio's method configs: a name, a description, a typed config with
/// defaults, and the trainer it builds. An island runs any registered method through the same actors, and a run's
/// config.json names its method, so every later command knows what it holds.
/// </summary>
public abstract class TrainingMethod
{
    public abstract string Name { get; }
    public abstract string Description { get; }
    public abstract Type ConfigType { get; }
    public abstract IMethodConfig Defaults { get; }

    /// <summary>How a job of this method is named: the method's name, or "name:argument" where the method takes one.</summary>
    public virtual string JobName(IMethodConfig config) => Name;

    /// <summary>Applies a job name's argument (expert:K) and the method's own completions to a config read from settings.</summary>
    /// <param name="isSet">Whether a camelCase config field was given explicitly.</param>
    public virtual IMethodConfig Configure(IMethodConfig config, string? argument, Func<string, bool> isSet)
    {
        if (argument is not null) throw new ConfigException("job", $"{Name} takes no argument (got '{Name}:{argument}')");
        return config;
    }

    /// <summary>Steps per chunk when the CLI runs the loop in process (an island's worker uses its own chunk setting).</summary>
    public virtual int ChunkSteps(IMethodConfig config) => Math.Max(1, Math.Min(config.CheckpointEvery, 10));

    /// <summary>Freezes the config in the run directory (refusing one that holds different settings) and builds the trainer.</summary>
    public abstract IChunkedTrainer Open(IMethodConfig config, string runDirectory, Action<string>? log = null, Device? device = null);

    protected TConfig As<TConfig>(IMethodConfig config) where TConfig : class, IMethodConfig =>
        config as TConfig ?? throw new ArgumentException($"method {Name} takes a {typeof(TConfig).Name}, not a {config.GetType().Name}");
}
