using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Islands.Actors;
using static Islands.Island.Tests.IslandTestEnvironment;

namespace Islands.Island.Tests;

/// <summary>The island's OpenTelemetry instruments, observed with the same listeners the OpenTelemetry SDK uses.</summary>
[Collection("islands")]
public sealed class IslandTelemetrySpecs
{
    [Fact]
    public async Task A_training_island_emits_step_loss_and_commit_metrics_and_commit_and_recovery_spans_tagged_with_its_name()
    {
        var measurements = new ConcurrentBag<(string Instrument, double Value, string? Island)>();
        using var meters = new MeterListener();
        meters.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == IslandTelemetry.Name) listener.EnableMeasurementEvents(instrument);
        };
        void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            string? island = null;
            foreach (var tag in tags) if (tag.Key == "island") island = tag.Value as string;
            measurements.Add((instrument.Name, value, island));
        }
        meters.SetMeasurementEventCallback<long>((i, v, t, _) => Record(i, v, t));
        meters.SetMeasurementEventCallback<double>((i, v, t, _) => Record(i, v, t));
        meters.Start();
        var spans = new ConcurrentBag<Activity>();
        using var activities = new ActivityListener
        {
            ShouldListenTo = source => source.Name == IslandTelemetry.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Add,
        };
        ActivitySource.AddActivityListener(activities);

        var (data, partitions) = await DatasetAsync();
        var store = TempDir("telemetry");
        var config = Path.Combine(store, "node.json");
        await File.WriteAllTextAsync(config, NodeConfig(data, partitions, steps: 50));
        var node = await LocalIsland.StartNodeAsync("telemetry", FreePort(), null, store, config, "sqlite", null);
        try
        {
            await Eventually(async () => (await LocalIsland.StatusAsync(node.Http)).Job is { Phase: "completed" }, TimeSpan.FromSeconds(90), "the job completes");
            meters.RecordObservableInstruments();
        }
        finally
        {
            await node.KillAsync();
            await node.App.DisposeAsync();
        }

        var ours = measurements.Where(m => m.Island == "telemetry").ToList();
        Assert.Equal(50, ours.Where(m => m.Instrument == "islands.training.steps").Sum(m => m.Value));
        Assert.Equal(2, ours.Count(m => m.Instrument == "islands.checkpoint.commits"));
        Assert.Contains(ours, m => m.Instrument == "islands.training.loss" && m.Value is > 0 and < 10);
        Assert.Contains(ours, m => m.Instrument == "islands.checkpoint.age" && m.Value >= 0);
        var commits = spans.Where(s => s.OperationName == "checkpoint.commit" && (string?)s.GetTagItem("island") == "telemetry").ToList();
        Assert.Equal([25L, 50L], commits.Select(s => (long)s.GetTagItem("step")!).Order());
        Assert.Contains(spans, s => s.OperationName == "job.recovery" && (string?)s.GetTagItem("island") == "telemetry");
    }
}
