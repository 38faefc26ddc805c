using System.Globalization;
using Islands.Diffusion.Configs;
using Islands.Diffusion.Training;
using static TorchSharp.torch;

namespace Islands.Diffusion.Methods;

/// <summary>One flow-matching expert trained in isolation on its partition: the islands of Decentralized Diffusion Models.</summary>
public sealed class ExpertMethod : TrainingMethod
{
    public override string Name => "expert";
    public override string Description => "flow-matching UNet expert trained in isolation on one data partition (job expert:K)";
    public override Type ConfigType => typeof(TrainConfig);
    public override IMethodConfig Defaults => new TrainConfig();

    public override string JobName(IMethodConfig config) =>
        As<TrainConfig>(config).Expert is { } k ? $"expert:{k.ToString(CultureInfo.InvariantCulture)}" : Name;

    public override IMethodConfig Configure(IMethodConfig config, string? argument, Func<string, bool> isSet)
    {
        if (Index($"{Name}:{argument}") is not { } k)
            throw new ConfigException("job", $"'expert{(argument is null ? "" : ":" + argument)}' must be expert:K (K a partition index)");
        return As<TrainConfig>(config) with { Job = Name, Expert = k };
    }

    /// <summary>The partition of an expert job's name ("expert:3" is 3), or null for any other job.</summary>
    public static int? Index(string job) =>
        job.StartsWith("expert:", StringComparison.Ordinal)
            && int.TryParse(job["expert:".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out var k) ? k : null;

    public override IChunkedTrainer Open(IMethodConfig config, string runDirectory, Action<string>? log = null, Device? device = null) =>
        TrainingJob.OpenExpert(As<TrainConfig>(config), runDirectory, log, device);
}

/// <summary>The baseline: the same model trained on all the data at once.</summary>
public sealed class MonolithMethod : TrainingMethod
{
    public override string Name => "monolith";
    public override string Description => "the same UNet trained on all the data (the baseline an ensemble is compared with)";
    public override Type ConfigType => typeof(TrainConfig);
    public override IMethodConfig Defaults => new TrainConfig(Job: "monolith");

    public override IMethodConfig Configure(IMethodConfig config, string? argument, Func<string, bool> isSet) =>
        As<TrainConfig>(base.Configure(config, argument, isSet)) with { Job = Name, Expert = null, PartitionsFile = null };

    public override IChunkedTrainer Open(IMethodConfig config, string runDirectory, Action<string>? log = null, Device? device = null) =>
        TrainingJob.OpenExpert(As<TrainConfig>(config), runDirectory, log, device);
}
