using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Islands.Actors;

/// <summary>
/// The island's OpenTelemetry instruments. They use System.Diagnostics only; the host decides which exporters listen.
/// Gauges read the latest values that the job actor records here, tagged by island.
/// </summary>
public static class IslandTelemetry
{
    public const string Name = "Islands.Island";
    public static readonly ActivitySource Source = new(Name);
    public static readonly Meter Meter = new(Name);

    public static readonly Counter<long> Steps = Meter.CreateCounter<long>("islands.training.steps", "{step}", "Training steps completed");
    public static readonly Counter<long> Commits = Meter.CreateCounter<long>("islands.checkpoint.commits", "{checkpoint}",
        "Checkpoints committed to the journal");
    public static readonly Counter<long> Recoveries = Meter.CreateCounter<long>("islands.job.recoveries", "{recovery}",
        "Job incarnations that resumed from the journal");
    public static readonly Counter<long> Restarts = Meter.CreateCounter<long>("islands.job.restarts", "{restart}",
        "Restarts of the training worker or the job actor after a failure");
    public static readonly Counter<long> RejectedCheckpoints = Meter.CreateCounter<long>("islands.checkpoint.rejected", "{checkpoint}",
        "Committed checkpoints that failed verification");

    public static readonly Counter<long> SkippedSteps = Meter.CreateCounter<long>("islands.training.skipped_steps", "{step}",
        "Training steps skipped for a non-finite loss or gradient norm");
    public static readonly Counter<long> Rollbacks = Meter.CreateCounter<long>("islands.training.rollbacks", "{rollback}",
        "Rollbacks to the last good checkpoint after too many non-finite steps");
    public static readonly Counter<long> Divergences = Meter.CreateCounter<long>("islands.training.divergences", "{job}",
        "Jobs that ended in phase diverged");

    private static readonly ConcurrentDictionary<string, Snapshot> Latest = new();

    private sealed record Snapshot(float Loss, double StepsPerSecond, DateTimeOffset? LastCommit);

    static IslandTelemetry()
    {
        Meter.CreateObservableGauge("islands.training.loss", () => Latest.Select(p => new Measurement<double>(p.Value.Loss, Tag(p.Key))), null,
            "Mean loss of the latest chunk");
        Meter.CreateObservableGauge("islands.training.steps_per_second",
            () => Latest.Select(p => new Measurement<double>(p.Value.StepsPerSecond, Tag(p.Key))), "{step}/s",
            "Training steps per second of the latest chunk");
        Meter.CreateObservableGauge("islands.checkpoint.age", () => Latest.Where(p => p.Value.LastCommit is not null)
            .Select(p => new Measurement<double>((DateTimeOffset.UtcNow - p.Value.LastCommit!.Value).TotalSeconds, Tag(p.Key))), "s",
            "Seconds since the last committed checkpoint");
    }

    public static KeyValuePair<string, object?> Tag(string island) => new("island", island);

    public static void RecordChunk(string island, int steps, float loss, double stepsPerSecond)
    {
        Steps.Add(steps, Tag(island));
        Latest.AddOrUpdate(island, _ => new Snapshot(loss, stepsPerSecond, null), (_, s) => s with { Loss = loss, StepsPerSecond = stepsPerSecond });
    }

    public static void RecordCommit(string island, DateTimeOffset at)
    {
        Commits.Add(1, Tag(island));
        Latest.AddOrUpdate(island, _ => new Snapshot(float.NaN, 0, at), (_, s) => s with { LastCommit = at });
    }
}
