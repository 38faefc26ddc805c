namespace Islands.Diffusion.Configs;

/// <summary>
/// Everything that determines a training run. Saved frozen as config.json in the run directory; every later command
/// (resume, sample, eval) rebuilds the run from that file.
/// </summary>
/// <param name="MaxConsecutiveBadSteps">Steps in a row with a non-finite loss or gradient norm (each skipped: weights and
/// optimizer untouched) after which the run rolls back to its last good checkpoint.</param>
/// <param name="MaxRollbacks">Rollbacks without progress past the failing step before the run ends as diverged. Neither
/// knob takes part in <see cref="DifferencesForResume"/>: a config.json written before they existed loads with the defaults.</param>
/// <param name="DegradedFraction">With a model that learns the degraded condition, the share of each batch replaced by
/// degraded copies labelled "degraded, class c" (never dropped to the null class).</param>
public sealed record TrainConfig(
    string Job = "expert",
    string DataDirectory = "",
    string? PartitionsFile = null,
    int? Expert = null,
    ModelConfig? Model = null,
    int Steps = 2000,
    int BatchSize = 64,
    double LearningRate = 2e-3,
    int WarmupSteps = 100,
    double MinLearningRateFraction = 0.1,
    double WeightDecay = 0.0,
    double GradClip = 1.0,
    double EmaDecay = 0.999,
    double LabelDropout = 0.1,
    string TimeSampling = "logit-normal",
    int Seed = 0,
    int CheckpointEvery = 500,
    int KeepCheckpoints = 3,
    string Precision = "fp32",
    int SchemaVersion = TrainConfig.CurrentSchemaVersion,
    int MaxConsecutiveBadSteps = 5,
    int MaxRollbacks = 2,
    double DegradedFraction = 0.2) : Methods.IMethodConfig
{
    public const int CurrentSchemaVersion = 1;
    public ModelConfig ModelOrDefault => Model ?? new ModelConfig();

    public IEnumerable<string> Validate()
    {
        if (SchemaVersion != CurrentSchemaVersion) yield return $"schemaVersion: {SchemaVersion} is not supported (expected {CurrentSchemaVersion})";
        if (Job is not ("expert" or "monolith")) yield return $"job: '{Job}' must be expert or monolith";
        if (string.IsNullOrWhiteSpace(DataDirectory)) yield return "dataDirectory: a dataset directory is required";
        if (PartitionsFile is not null && Expert is null) yield return "expert: required with a partition file";
        if (Expert is not null && PartitionsFile is null) yield return "partitionsFile: required with an expert index";
        if (Expert is < 0) yield return $"expert: {Expert} must not be negative";
        if (Steps < 1) yield return $"steps: {Steps} must be at least 1";
        if (BatchSize is < 1 or > 65536) yield return $"batchSize: {BatchSize} must lie in 1..65536";
        if (LearningRate is <= 0 or > 1) yield return $"learningRate: {LearningRate} must lie in (0, 1]";
        if (WarmupSteps < 0) yield return $"warmupSteps: {WarmupSteps} must not be negative";
        if (MinLearningRateFraction is < 0 or > 1) yield return "minLearningRateFraction: must lie in [0, 1]";
        if (GradClip < 0) yield return $"gradClip: {GradClip} must not be negative (0 disables clipping)";
        if (EmaDecay is < 0 or >= 1) yield return $"emaDecay: {EmaDecay} must lie in [0, 1)";
        if (LabelDropout is < 0 or > 1) yield return $"labelDropout: {LabelDropout} must lie in [0, 1]";
        if (TimeSampling is not ("uniform" or "logit-normal")) yield return $"timeSampling: '{TimeSampling}' must be uniform or logit-normal";
        if (CheckpointEvery < 1) yield return $"checkpointEvery: {CheckpointEvery} must be at least 1";
        if (KeepCheckpoints < 1) yield return $"keepCheckpoints: {KeepCheckpoints} must be at least 1";
        if (Precision is not ("fp32" or "bf16")) yield return $"precision: '{Precision}' must be fp32 or bf16";
        if (MaxConsecutiveBadSteps < 1) yield return $"maxConsecutiveBadSteps: {MaxConsecutiveBadSteps} must be at least 1";
        if (MaxRollbacks < 0) yield return $"maxRollbacks: {MaxRollbacks} must not be negative";
        if (DegradedFraction is < 0 or >= 1) yield return $"degradedFraction: {DegradedFraction} must lie in [0, 1)";
        foreach (var e in ModelOrDefault.Validate()) yield return e;
    }

    public void ThrowIfInvalid() => ConfigException.ThrowFirst(Validate());

    /// <summary>
    /// The config for a dataset: a model left at the default image shape (1 × 28 × 28, Fashion-MNIST's) takes the
    /// dataset's C × H × W; a model given another shape keeps it, and training refuses data that does not match.
    /// </summary>
    public TrainConfig ForData(Data.DatasetManifest manifest)
    {
        var model = ModelOrDefault;
        var unset = model.ImageChannels == 1 && model.ImageSize == 28 && model.ImageWidth is null;
        var other = manifest.Channels != 1 || manifest.Height != 28 || manifest.Width != 28;
        return unset && other ? this with { Model = model.ForImages(manifest.Channels, manifest.Height, manifest.Width) } : this;
    }

    /// <summary>The fields that a resumed run must share with the run it continues; Steps may grow.</summary>
    public IEnumerable<string> DifferencesForResume(TrainConfig other)
    {
        if (Job != other.Job) yield return $"job ({Job} vs {other.Job})";
        if (Path.GetFullPath(DataDirectory) != Path.GetFullPath(other.DataDirectory))
            yield return $"dataDirectory ({DataDirectory} vs {other.DataDirectory})";
        if (Expert != other.Expert) yield return $"expert ({Expert} vs {other.Expert})";
        if (BatchSize != other.BatchSize) yield return $"batchSize ({BatchSize} vs {other.BatchSize})";
        if (LearningRate != other.LearningRate) yield return $"learningRate ({LearningRate} vs {other.LearningRate})";
        if (Seed != other.Seed) yield return $"seed ({Seed} vs {other.Seed})";
        if (TimeSampling != other.TimeSampling) yield return $"timeSampling ({TimeSampling} vs {other.TimeSampling})";
        if (Precision != other.Precision) yield return $"precision ({Precision} vs {other.Precision})";
        if (DegradedFraction != other.DegradedFraction) yield return $"degradedFraction ({DegradedFraction} vs {other.DegradedFraction})";
        if (!ModelOrDefault.Multipliers.SequenceEqual(other.ModelOrDefault.Multipliers)
            || ModelOrDefault with { ChannelMultipliers = null } != other.ModelOrDefault with { ChannelMultipliers = null })
            yield return "model";
    }
}
