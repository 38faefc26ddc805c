using Islands.Diffusion.Methods;

namespace Islands.Diffusion.Distillation;

/// <summary>
/// Frozen configuration of a score-distillation run (config.json in its run directory): which images are optimised
/// towards which class, with which source, under the ensemble a store publishes. The defaults are the paper's 2D
/// settings (1000 steps, the bridge switching at 500, guidance 40, AdamW at 0.01, t uniform in [0.02, 0.98]).
/// </summary>
/// <param name="Job">The method: sds, nfsd or bridge.</param>
/// <param name="Store">A checkpoint store with published experts and a router (what islands publish, what serving reads).</param>
/// <param name="SourceClass">The source's class (nfsd's negative, the bridge's calibrated source after SwitchStep); the
/// target class when null.</param>
/// <param name="DegradedSource">The source is "degraded, SourceClass" (the experts must have learned the degraded
/// condition); otherwise the plain SourceClass.</param>
/// <param name="Count">Images optimised together (each its own parameters; the batch of every step).</param>
/// <param name="Task">class (free images towards TargetClass), translate (real test images of SourceClass moved to
/// TargetClass; cap TMax to keep their structure) or illusion (images that read as TargetClass upright and as
/// IllusionClass turned 180°, the two views' directions summed).</param>
/// <param name="InputClass">A translation's input class (its test images); its calibrated source unless SourceClass is given.</param>
/// <param name="SwitchStep">The bridge runs plain SDS before this step and the calibrated source from it on.</param>
public sealed record DistillConfig(
    string Job = "sds",
    string Store = "",
    int TargetClass = 0,
    int? SourceClass = null,
    int Count = 16,
    int Steps = 1000,
    int SwitchStep = 500,
    double Guidance = 40,
    double TMin = 0.02,
    double TMax = 0.98,
    double LearningRate = 0.01,
    string Strategy = "top1",
    int Seed = 0,
    int CheckpointEvery = 100,
    int KeepCheckpoints = 3,
    int SchemaVersion = DistillConfig.CurrentSchemaVersion,
    int MaxConsecutiveBadSteps = 5,
    int MaxRollbacks = 2,
    bool DegradedSource = true,
    string Task = "class",
    int? IllusionClass = null,
    int? InputClass = null) : IMethodConfig
{
    public const int CurrentSchemaVersion = 1;
    public static readonly string[] Modes = ["sds", "nfsd", "bridge"];
    public static readonly string[] Tasks = ["class", "translate", "illusion"];

    public int BatchSize => Count;

    /// <summary>The fields a resumed run must share with the one it continues: Steps may grow; SwitchStep matters only to the bridge.</summary>
    public DistillConfig ForResume() => this with { Steps = 0, SwitchStep = Job == "bridge" ? SwitchStep : 0 };

    /// <summary>Whether step s takes the source condition (rather than plain SDS's unconditional and noise).</summary>
    public bool CalibratedAt(long step) => Job == "nfsd" || Job == "bridge" && step >= SwitchStep;

    /// <summary>The stage step s belongs to: sds (plain SDS), nfsd, or calibrated (the bridge's second stage).</summary>
    public string StageAt(long step) => !CalibratedAt(step) ? "sds" : Job == "nfsd" ? "nfsd" : "calibrated";

    public IEnumerable<string> Validate()
    {
        if (!Modes.Contains(Job)) yield return $"job: '{Job}' must be sds, nfsd or bridge";
        if (SchemaVersion != CurrentSchemaVersion) yield return $"schemaVersion: {SchemaVersion} is not supported (expected {CurrentSchemaVersion})";
        if (string.IsNullOrWhiteSpace(Store)) yield return "store: a checkpoint store with published experts and a router is required";
        if (TargetClass < 0) yield return $"targetClass: {TargetClass} must not be negative";
        if (Job is "nfsd" or "bridge" && !DegradedSource && SourceClass is null)
            yield return $"sourceClass: {Job} with a plain source needs a source class";
        if (SourceClass is < 0) yield return $"sourceClass: {SourceClass} must not be negative";
        if (!Tasks.Contains(Task)) yield return $"task: '{Task}' must be class, translate or illusion";
        if (Task == "translate" && InputClass is null) yield return "inputClass: a translation needs the class of its input images";
        if (Task == "translate" && InputClass == TargetClass) yield return $"inputClass: {InputClass} is the target class; translate to another";
        if (Task != "translate" && InputClass is not null) yield return "inputClass: only a translation has input images";
        if (InputClass is < 0) yield return $"inputClass: {InputClass} must not be negative";
        if (Task == "illusion" && IllusionClass is null) yield return "illusionClass: an illusion needs the class it shows turned 180°";
        if (IllusionClass is < 0) yield return $"illusionClass: {IllusionClass} must not be negative";
        if (Task != "illusion" && IllusionClass is not null) yield return "illusionClass: only an illusion has one";
        if (Task == "illusion" && Job != "sds" && !DegradedSource)
            yield return "degradedSource: an illusion's calibrated sources are its two classes' degraded conditions";
        if (SourceClass == TargetClass && Job != "sds" && !DegradedSource)
            yield return $"sourceClass: {SourceClass} is the target class (the direction would be 0)";
        if (Count is < 1 or > 1024) yield return $"count: {Count} must lie in 1..1024";
        if (Steps < 1) yield return $"steps: {Steps} must be at least 1";
        if (Job == "bridge" && (SwitchStep < 0 || SwitchStep > Steps)) yield return $"switchStep: {SwitchStep} must lie in 0..steps ({Steps})";
        if (Guidance is < 0 or > 200 || double.IsNaN(Guidance)) yield return $"guidance: {Guidance} must lie in 0..200";
        if (TMin is < 0.001 or > 1) yield return $"tMin: {TMin} must lie in [0.001, 1]";
        if (TMax is < 0.001 or > 1 || TMax < TMin) yield return $"tMax: {TMax} must lie in [tMin ({TMin}), 1]";
        if (Strategy.StartsWith("sample", StringComparison.Ordinal))
            yield return "strategy: 'sample' draws its experts from a stream a checkpoint does not keep, so a resumed run would route differently";
        if (LearningRate is <= 0 or > 10) yield return $"learningRate: {LearningRate} must lie in (0, 10]";
        if (CheckpointEvery < 1) yield return $"checkpointEvery: {CheckpointEvery} must be at least 1";
        if (KeepCheckpoints < 1) yield return $"keepCheckpoints: {KeepCheckpoints} must be at least 1";
        if (MaxConsecutiveBadSteps < 1) yield return $"maxConsecutiveBadSteps: {MaxConsecutiveBadSteps} must be at least 1";
        if (MaxRollbacks < 0) yield return $"maxRollbacks: {MaxRollbacks} must not be negative";
    }

    public void ThrowIfInvalid() => ConfigException.ThrowFirst(Validate());
}
