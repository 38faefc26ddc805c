using System.Globalization;
using Islands.Actors;
using Islands.Cli.Demo;

namespace Islands.Cli;

/// <summary>
/// How `islands demo`, `islands cluster status` and `islands status` show a job: the values it reported, and "?" for
/// what is not known (an island that does not answer has no step; it is never shown as step 0 of 0).
/// </summary>
public static class StatusText
{
    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    /// <summary>"120/500"; an unknown step or total (null, or a total that is not positive) is "?": "?/500".</summary>
    public static string Steps(long? step, long? total) =>
        $"{(step is >= 0 ? step.Value.ToString(Invariant) : "?")}/{(total is > 0 ? total.Value.ToString(Invariant) : "?")}";

    /// <summary>"0.1234"; a non-finite loss as what it is ("NaN", "Infinity"); no loss reported yet (or null in JSON) is "-".</summary>
    public static string Loss(float? loss) => loss switch
    {
        null => "-",
        { } l when float.IsFinite(l) => l.ToString("F4", Invariant),
        { } l => l.ToString(Invariant),
    };

    /// <summary>"step 100", "step 100 (loss NaN)" when its loss is not finite, or "none".</summary>
    public static string Checkpoint(long? step, float? loss) =>
        step is not { } s ? "none" : loss is { } l && !float.IsFinite(l) ? $"step {s.ToString(Invariant)} (loss {Loss(l)})"
        : $"step {s.ToString(Invariant)}";

    /// <summary>One line for a job: "training step 120/500, loss 0.1234, 57 img/s, last checkpoint step 100 on akka.tcp://…".</summary>
    public static string Job(JobStatus j) =>
        $"{j.Phase} step {Steps(j.Step, j.TotalSteps)}, loss {Loss(j.Loss)}, {j.ImagesPerSecond.ToString("F0", Invariant)} img/s, " +
        $"last checkpoint {Checkpoint(j.LastCheckpoint?.Step, j.LastCheckpoint?.Loss)}{(j.Node is null ? "" : $" on {j.Node}")}";

    /// <summary>A cluster island whose nodes do not answer: what is known (the planned steps) and what is not.</summary>
    public static string NoAnswer(long? totalSteps) => $"step {Steps(null, totalSteps)} (phase unknown: no node answers)";

    /// <summary>The demo's progress line for an island (without its ETA).</summary>
    public static string Demo(DemoIslandState s) =>
        $"{s.Island,-9} {s.Phase,-10} step {Steps(s.Step, s.TotalSteps)} loss {Loss(s.Loss)} {s.ImagesPerSecond.ToString("F0", Invariant)} img/s " +
        $"checkpoint {Checkpoint(s.LastCheckpointStep, s.LastCheckpointLoss)}{(s.Stopped ? " (stopped)" : "")}" +
        $"{(s.Error is null ? "" : $" ({s.Error})")}";

    /// <summary>The demo's closing line for an island: where its status is served, or where it stopped.</summary>
    public static string DemoSummary(DemoIslandState s) => s.Stopped || s.StatusUrl is null
        ? $"{s.Island,-9} stopped at step {Steps(s.Step, s.TotalSteps)} (phase {s.Phase}), last checkpoint " +
            $"{Checkpoint(s.LastCheckpointStep, s.LastCheckpointLoss)}; rerun to continue"
        : $"{s.Island,-9} {s.StatusUrl}  ({s.Phase}, step {Steps(s.Step, s.TotalSteps)}, checkpoint " +
            $"{Checkpoint(s.LastCheckpointStep, s.LastCheckpointLoss)})";
}
