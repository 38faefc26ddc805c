using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Configs;
using Islands.Diffusion.IO;
using Islands.Diffusion.Modules;
using Islands.Diffusion.Routing;
using Islands.Diffusion.Training;

namespace Islands.Diffusion.Serving;

/// <summary>An expert loaded for serving: the network (fp32 or bf16) and what a caller needs to feed it.</summary>
public sealed class ServedExpert(IVelocityModel model, IDisposable owner, ModelConfig config, PublishedModel published) : IDisposable
{
    public IVelocityModel Model { get; } = model;
    public ModelConfig Config { get; } = config;
    public PublishedModel Published { get; } = published;
    public long ImageFloats => (long)Config.ImageChannels * Config.Height * Config.Width;
    public void Dispose() => owner.Dispose();
}

/// <summary>Loads published models for serving, re-verifying every hash just before the weights are read.</summary>
public static class ServedModels
{
    public static ServedExpert LoadExpert(PublishedModel published, string precision)
    {
        CheckpointStore.VerifyReference(published.CheckpointDirectory, published.ManifestSha256);
        var config = new RunDirectory(published.RunDirectory).LoadConfig();
        var model = config.ModelOrDefault.Build();
        try
        {
            model.load(Path.Combine(published.CheckpointDirectory, ExpertTrainer.EmaFile));
            if (NonFiniteGuard.FirstNonFinite(model) is { } tensor)
                throw new InvalidOperationException($"tensor '{tensor}' is not finite (NaN or infinity)");
            model.eval();
            var velocity = Bfloat16Velocity.ForPrecision(model, precision);
            return new ServedExpert(velocity, model, config.ModelOrDefault, published);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or KeyNotFoundException)
        {
            model.Dispose();
            throw new CheckpointException(published.CheckpointDirectory,
                $"weights do not fit the model in config.json or are not finite ({e.Message})", e);
        }
    }

    /// <summary>The image shape (C, H, W) an expert was trained on, from its run's config.json.</summary>
    public static (long C, long H, long W) ImageShape(PublishedModel expert)
    {
        var m = new RunDirectory(expert.RunDirectory).LoadConfig().ModelOrDefault;
        return m.Shape;
    }

    /// <summary>The experts' class count when every one learned the degraded condition, else null.</summary>
    public static int? DegradedClassCount(IReadOnlyList<PublishedModel> experts)
    {
        var models = experts.Select(e => new RunDirectory(e.RunDirectory).LoadConfig().ModelOrDefault).ToList();
        return models.Count > 0 && models.All(m => m.DegradedCondition) ? models[0].ClassCount : null;
    }

    /// <summary>How many classes an expert knows, and their names when its dataset's manifest is readable from here.</summary>
    public static (int Count, IReadOnlyList<string> Names) Classes(PublishedModel expert)
    {
        var config = new RunDirectory(expert.RunDirectory).LoadConfig();
        var manifest = Path.Combine(config.DataDirectory, Data.DatasetManifest.FileName);
        var names = File.Exists(manifest) ? Json.Read<Data.DatasetManifest>(manifest).Classes : [];
        // A model may have room for more classes than its dataset has (the default 10 for 6 synthetic-rgb classes): the dataset's are served.
        return names.Count > 0 && names.Count <= config.ModelOrDefault.ClassCount ? (names.Count, names) : (config.ModelOrDefault.ClassCount, []);
    }

    /// <param name="imageFloats">C·H·W of the experts' images (the router's input width).</param>
    public static (RouterNet Router, RouterConfig Config) LoadRouter(PublishedModel published, long imageFloats)
    {
        CheckpointStore.VerifyReference(published.CheckpointDirectory, published.ManifestSha256);
        var configPath = Path.Combine(published.RunDirectory, RunDirectory.ConfigFile);
        var config = Json.Read<RouterConfig>(configPath);
        config.ThrowIfInvalid();
        var router = RouterNet.For(imageFloats, config);
        try
        {
            router.load(Path.Combine(published.CheckpointDirectory, RouterTrainer.WeightsFile));
            if (NonFiniteGuard.FirstNonFinite(router) is { } tensor)
                throw new InvalidOperationException($"tensor '{tensor}' is not finite (NaN or infinity)");
            router.eval();
            return (router, config);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or KeyNotFoundException)
        {
            router.Dispose();
            throw new CheckpointException(published.CheckpointDirectory, $"router weights do not fit its config.json or are not finite ({e.Message})",
                e);
        }
    }
}
