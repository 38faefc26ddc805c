namespace Islands.Cli.Demo;

/// <summary>
/// One island of the demo as it is now. Step is null when it is not known (the island does not answer); TotalSteps is
/// the plan's. Phase is the job's own (starting, training, completed, diverged, ...), "unreachable" when its node does
/// not answer (Error says why) or "unknown" when the node answers without its job. A stopped island keeps the phase and
/// step it last reported, and its checkpoint is the one it published on disk.
/// </summary>
public sealed record DemoIslandState(string Island, string Job, string Phase, long? Step, long? TotalSteps, float? Loss, double ImagesPerSecond,
    long? LastCheckpointStep, float? LastCheckpointLoss, string? StatusUrl, string? Error = null, bool Stopped = false)
{
    /// <summary>Phases after which an island has no model worth serving, whatever it committed.</summary>
    public static readonly IReadOnlySet<string> FailedPhases = new HashSet<string>(StringComparer.Ordinal) { "diverged", "failed" };

    /// <summary>Why this island has no usable model, or null if it has one (a finite committed checkpoint, and a phase that did not fail).</summary>
    public string? Unusable() =>
        FailedPhases.Contains(Phase) ? $"{Island} (phase {Phase} at step {StatusText.Steps(Step, TotalSteps)})"
        : LastCheckpointStep is null
            ? $"{Island} (no committed checkpoint; phase {Phase}, step {StatusText.Steps(Step, TotalSteps)}{(Error is null ? "" : $"; {Error}")})"
        : LastCheckpointLoss is { } l && !float.IsFinite(l) ? $"{Island} (its checkpoint at step {LastCheckpointStep} has loss {StatusText.Loss(l)})"
        : null;
}
