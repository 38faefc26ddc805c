using Islands.Diffusion.IO;
using Islands.Diffusion.Methods;
using Islands.Diffusion.Training;
using static TorchSharp.torch;

namespace Islands.Diffusion.Distillation;

/// <summary>
/// Score distillation registered as methods of the one training loop (sds, nfsd, bridge): a run freezes its
/// <see cref="DistillConfig"/>, checkpoints its images and resumes like any other job, in the CLI or on an island.
/// </summary>
public sealed class DistillMethod(string name, string description) : TrainingMethod
{
    public static readonly DistillMethod Sds = new("sds",
        "score distillation sampling: images pushed towards a class, the unconditional prediction guiding and the injected noise as source");
    public static readonly DistillMethod Nfsd = new("nfsd",
        "negative-free-style distillation: a fixed negative condition (sourceClass) as both guidance negative and source");
    public static readonly DistillMethod Bridge = new("bridge",
        "score distillation as a bridge: plain SDS until switchStep, then the calibrated source condition (sourceClass)");

    public static DistillMethod For(string mode) => mode switch
    {
        "sds" => Sds,
        "nfsd" => Nfsd,
        "bridge" => Bridge,
        _ => throw new ConfigException("job", $"'{mode}' must be sds, nfsd or bridge"),
    };

    /// <summary>The views a run's direction sums, with the prior's labels: one upright view, and for an illusion a turned one.</summary>
    private static List<DistillView> Views(DistillConfig config, IDistillationPrior prior)
    {
        long Source(int cls)
        {
            var sourceClass = config.Task == "illusion" ? cls : config.SourceClass ?? config.InputClass ?? cls;
            if (config.Job == "sds" || !config.DegradedSource) return sourceClass;
            return prior.DegradedLabel(sourceClass) ?? throw new ConfigException("degradedSource",
                $"{config.Store}: the experts did not learn the degraded condition (train them with --degraded-condition), so {config.Job} " +
                "needs a plain source class");
        }
        List<DistillView> views = [new(false, config.TargetClass, Source(config.TargetClass))];
        if (config.IllusionClass is { } turned) views.Add(new DistillView(true, turned, Source(turned)));
        return views;
    }

    public override string Name => name;
    public override string Description => description;
    public override Type ConfigType => typeof(DistillConfig);
    public override IMethodConfig Defaults => new DistillConfig(Job: name);

    public override IMethodConfig Configure(IMethodConfig config, string? argument, Func<string, bool> isSet) =>
        As<DistillConfig>(base.Configure(config, argument, isSet)) with { Job = name };

    public override int ChunkSteps(IMethodConfig config) => Math.Max(1, Math.Min(config.CheckpointEvery, 25));

    public override IChunkedTrainer Open(IMethodConfig config, string runDirectory, Action<string>? log = null, Device? device = null)
    {
        var distill = As<DistillConfig>(config);
        return Open(distill, runDirectory, () => EnsemblePrior.Load(distill.Store, distill.Strategy));
    }

    /// <summary>Opens a run (freezing its config, or checking it against the frozen one) over the prior loadPrior gives.</summary>
    /// <param name="initial">The starting images [Count, C, H, W]; by default a translation's test images, else seeded grey noise.</param>
    public DistillationTrainer Open(DistillConfig distill, string runDirectory, Func<IDistillationPrior> loadPrior, Tensor? initial = null)
    {
        distill.ThrowIfInvalid();
        var configPath = Path.Combine(runDirectory, RunDirectory.ConfigFile);
        if (File.Exists(configPath))
        {
            var frozen = Json.Read<DistillConfig>(configPath);
            if (frozen.ForResume() != distill.ForResume())
                throw new ConfigException("runDirectory",
                    $"{runDirectory} holds a distillation with different settings; resume with the same settings, or distill into a new run " +
                    "directory");
        }
        var prior = loadPrior();
        try
        {
            foreach (var (field, value) in new[] { ("targetClass", distill.TargetClass), ("sourceClass", distill.SourceClass ?? 0) })
                if (value >= prior.ClassCount)
                    throw new ConfigException(field, $"{value} is not a class of the store's experts (0..{prior.ClassCount - 1})");
            if (distill.IllusionClass is { } turned && turned >= prior.ClassCount)
                throw new ConfigException("illusionClass", $"{turned} is not a class of the store's experts (0..{prior.ClassCount - 1})");
            var views = Views(distill, prior);
            using var inputs = initial is null && distill.Task == "translate" ? DistillationInputs.TestImages(distill) : null;
            Directory.CreateDirectory(runDirectory);
            Json.WriteAtomic(configPath, distill);
            return new DistillationTrainer(distill, prior.Field(), prior.Shape, new Checkpoints.CheckpointStore(runDirectory), initial ?? inputs,
                prior,
                views);
        }
        catch
        {
            prior.Dispose();
            throw;
        }
    }
}
