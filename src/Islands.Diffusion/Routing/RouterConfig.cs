namespace Islands.Diffusion.Routing;

/// <summary>Frozen configuration of a learned router run (config.json in its run directory).</summary>
/// <param name="MaxConsecutiveBadSteps">Non-finite steps in a row (each skipped) before the run rolls back; see TrainConfig.</param>
/// <param name="MaxRollbacks">Rollbacks without progress before the run ends as diverged.</param>
/// <param name="DegradedCondition">The router also learns "degraded, class c" (label ClassCount + 1 + c) from corrupted
/// copies of the images (labelled with their image's partition), as experts do with ModelConfig.DegradedCondition, so a
/// degraded query is routed by what the router learned of degraded images, not as its plain class.</param>
/// <param name="DegradedFraction">With DegradedCondition, the share of each batch replaced by degraded copies.</param>
public sealed record RouterConfig(
    string Job = "router",
    string DataDirectory = "",
    string PartitionsFile = "",
    int ExpertCount = 4,
    int Hidden = 256,
    int TimeEmbeddingDim = 64,
    int ClassCount = 10,
    int Steps = 2000,
    int BatchSize = 256,
    double LearningRate = 1e-3,
    double HeldOutFraction = 0.05,
    int Seed = 0,
    int CheckpointEvery = 500,
    int KeepCheckpoints = 3,
    int SchemaVersion = RouterConfig.CurrentSchemaVersion,
    int MaxConsecutiveBadSteps = 5,
    int MaxRollbacks = 2,
    bool DegradedCondition = false,
    double DegradedFraction = 0.2) : Methods.IMethodConfig
{
    public const int CurrentSchemaVersion = 1;

    public IEnumerable<string> Validate()
    {
        if (Job != "router") yield return $"job: '{Job}' must be router";
        if (SchemaVersion != CurrentSchemaVersion) yield return $"schemaVersion: {SchemaVersion} is not supported (expected {CurrentSchemaVersion})";
        if (string.IsNullOrWhiteSpace(DataDirectory)) yield return "dataDirectory: a dataset directory is required";
        if (string.IsNullOrWhiteSpace(PartitionsFile)) yield return "partitionsFile: a partition file is required";
        if (ExpertCount < 1) yield return $"expertCount: {ExpertCount} must be at least 1";
        if (Hidden < 1) yield return $"hidden: {Hidden} must be at least 1";
        if (Steps < 1) yield return $"steps: {Steps} must be at least 1";
        if (BatchSize < 1) yield return $"batchSize: {BatchSize} must be at least 1";
        if (LearningRate is <= 0 or > 1) yield return $"learningRate: {LearningRate} must lie in (0, 1]";
        if (HeldOutFraction is <= 0 or >= 1) yield return $"heldOutFraction: {HeldOutFraction} must lie in (0, 1)";
        if (CheckpointEvery < 1) yield return $"checkpointEvery: {CheckpointEvery} must be at least 1";
        if (MaxConsecutiveBadSteps < 1) yield return $"maxConsecutiveBadSteps: {MaxConsecutiveBadSteps} must be at least 1";
        if (MaxRollbacks < 0) yield return $"maxRollbacks: {MaxRollbacks} must not be negative";
        if (DegradedFraction is < 0 or >= 1) yield return $"degradedFraction: {DegradedFraction} must lie in [0, 1)";
    }

    public void ThrowIfInvalid() => ConfigException.ThrowFirst(Validate());
}
