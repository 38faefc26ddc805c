using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Islands.Actors.Serving;

/// <summary>
/// Serving's OpenTelemetry instruments and its trace context hand-off: Activity.Current does not cross a mailbox, so
/// messages carry the W3C traceparent of the span that sent them and the receiver continues that trace.
/// </summary>
public static class ServingTelemetry
{
    public const string Name = "Islands.Serving";
    public static readonly ActivitySource Source = new(Name);
    public static readonly Meter Meter = new(Name);

    public static readonly Histogram<double> RequestDuration = Meter.CreateHistogram<double>("islands.serving.request.duration", "s",
        "Generation request latency, accepted to answered");
    public static readonly Histogram<int> BatchRows = Meter.CreateHistogram<int>("islands.serving.batch.rows", "{image}",
        "Images in one routed step");
    public static readonly Counter<long> ExpertSelections = Meter.CreateCounter<long>("islands.serving.expert.selections", "{image}",
        "Images routed to each expert per step");
    public static readonly Counter<long> ExpertTimeouts = Meter.CreateCounter<long>("islands.serving.expert.timeouts", "{step}",
        "Steps in which an expert missed its deadline or failed");
    public static readonly Counter<long> StragglingSteps = Meter.CreateCounter<long>("islands.serving.steps.straggling", "{step}",
        "Routed steps that waited longer than the straggler factor allows, so the next step started without them");
    public static readonly Counter<long> DegradedResponses = Meter.CreateCounter<long>("islands.serving.degraded", "{request}",
        "Generations answered with some experts left out");
    public static readonly Counter<long> Rejected = Meter.CreateCounter<long>("islands.serving.rejected", "{request}",
        "Requests refused: invalid, unauthorised, too large or too many");

    private static long queuedRows;

    static ServingTelemetry()
    {
        Meter.CreateObservableGauge("islands.serving.queue.depth", () => Interlocked.Read(ref queuedRows), "{image}",
            "Images waiting or integrating in this node's routers");
    }

    public static void AddQueued(long rows) => Interlocked.Add(ref queuedRows, rows);

    public static string? CurrentTraceParent() => Activity.Current?.Id is { } id && Activity.Current.IdFormat == ActivityIdFormat.W3C ? id : null;

    /// <summary>
    /// Starts a span for work that outlives this message (a generation, a step) without making it Activity.Current, which
    /// would otherwise leak into whatever the actor's thread processes next.
    /// </summary>
    public static Activity? StartDetached(string name, string? parentId, IEnumerable<ActivityLink>? links = null)
    {
        var previous = Activity.Current;
        ActivityContext.TryParse(parentId, null, out var parent);
        var span = Source.StartActivity(name, ActivityKind.Internal, parent, links: links);
        Activity.Current = previous;
        return span;
    }

    /// <summary>Starts a span that continues the trace named by a message's traceparent (a root span when there is none).</summary>
    public static Activity? StartFrom(string name, string? traceParent, ActivityKind kind = ActivityKind.Internal) =>
        traceParent is not null && ActivityContext.TryParse(traceParent, null, out var parent)
            ? Source.StartActivity(name, kind, parent)
            : Source.StartActivity(name, kind);
}
