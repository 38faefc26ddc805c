using System.Diagnostics;
using Akka.Actor;
using Akka.Event;
using Islands.Diffusion.Serving;

namespace Islands.Actors.Serving;

/// <summary>
/// The router's book of generations: who waits for each, its deadline and span, the checkpoints that served it, joining
/// a repeated Idempotency-Key, progress, results (stored and remembered for retries) and requests that ran out of time.
/// Plain state that tells subscribers; the router actor owns it and calls it from its mailbox.
/// </summary>
internal sealed class GenerationTracker(string ensemble, ServingSettings settings, ILoggingAdapter log) : IDisposable
{
    private readonly Dictionary<string, TrackedGeneration> tracked = [];

    public GenerationResultStore Results { get; } = new(settings.ResultsDirectory);

    public IEnumerable<string> Ids => tracked.Keys;

    /// <summary>Answers a request it already knows (joined while running, or from its result); false when it is new.</summary>
    public bool TryAnswer(Generate request, IActorRef sender, int pendingRows)
    {
        if (tracked.TryGetValue(request.Id, out var running))
        {
            if (running.Request.RequestHash != request.RequestHash) sender.Tell(EnsembleRouterActor.IdempotencyConflict(request.Id));
            else
            {
                if (!running.Subscribers.Contains(sender)) running.Subscribers.Add(sender);
                sender.Tell(new GenerationAccepted(request.Id, pendingRows));
            }
            return true;
        }
        if (Results.Find(request.Id) is not { } done) return false;
        sender.Tell(done.RequestHash == request.RequestHash ? done : EnsembleRouterActor.IdempotencyConflict(request.Id));
        return true;
    }

    public void Track(Generate request, GenerationSpec spec, IActorRef sender)
    {
        var span = ServingTelemetry.StartDetached("generation", request.TraceParent);
        span?.SetTag("islands.generation", request.Id);
        span?.SetTag("islands.count", spec.Count);
        var entry = new TrackedGeneration(request, spec, DateTime.UtcNow + settings.RequestTimeout, span);
        entry.Subscribers.Add(sender);
        tracked[request.Id] = entry;
        ServingTelemetry.AddQueued(spec.Count);
    }

    public GenerationState State(string id, ContinuousSampler? sampler)
    {
        if (tracked.TryGetValue(id, out var t))
        {
            var generation = sampler?.Active.FirstOrDefault(g => g.Id == id);
            return new GenerationState(id, generation?.QueueSeconds is null ? "queued" : "running", generation?.Step ?? 0, t.Spec.Steps);
        }
        return Results.Find(id) is { } done
            ? new GenerationState(id, "completed", done.Request.Steps, done.Request.Steps)
            : new GenerationState(id, "unknown", 0, 0);
    }

    /// <summary>The span of a step, a child of its first generation's and linked to every other generation in it.</summary>
    public Activity? StartStep(StepPlan plan)
    {
        // Score queries ride the same plans untracked here: the step's parent is its first generation, if it has one.
        var ids = plan.Rows.Select(r => r.Generation.Id).Distinct().Where(tracked.ContainsKey).ToList();
        var first = ids.Count > 0 ? tracked[ids[0]] : null;
        var links = ids.Skip(1).Select(id => tracked[id].Span).Where(s => s is not null).Select(s => new ActivityLink(s!.Context));
        var span = ServingTelemetry.StartDetached("router.step", first?.Span?.Id ?? first?.Request.TraceParent, links);
        span?.SetTag("islands.rows", plan.Rows.Count);
        return span;
    }

    /// <summary>Tells progress to the subscribers of generations that advanced, and the result to those that completed.</summary>
    public void Report(StepOutcome outcome, IEnumerable<ServedCheckpoint> checkpoints, ContinuousSampler sampler, PublishedModel? router)
    {
        foreach (var g in outcome.Advanced)
        {
            if (!tracked.TryGetValue(g.Id, out var t)) continue;
            foreach (var c in checkpoints) t.Checkpoints[c.Job] = c;
            if (g.Step <= t.LastReportedStep) continue;
            t.LastReportedStep = g.Step;
            var progress = new GenerationProgress(g.Id, g.Step, g.Spec.Steps, [.. g.LeftOutExperts]);
            foreach (var s in t.Subscribers) s.Tell(progress);
        }
        foreach (var done in outcome.Completed) Finish(done, sampler, router);
    }

    private void Finish(CompletedGeneration done, ContinuousSampler sampler, PublishedModel? router)
    {
        if (!tracked.Remove(done.Id, out var t)) return;
        var checkpoints = t.Checkpoints.Values.OrderBy(c => c.Job, StringComparer.Ordinal).ToList();
        if (router is not null) checkpoints.Add(new ServedCheckpoint("router", router.Step, router.ManifestSha256));
        var completed = GenerationCompleted.Of(done, ensemble, t.Request, sampler.Shape, sampler.ExpertCount, checkpoints);
        try
        {
            Results.Save(completed);
        }
        catch (IOException e)
        {
            log.Error("ensemble {0}: could not store result {1} in {2}: {3}", ensemble, done.Id, Results.Directory, e.Message);
        }
        Results.Remember(completed);
        if (done.LeftOutExperts.Length > 0) ServingTelemetry.DegradedResponses.Add(1);
        t.Span?.SetTag("islands.left_out", string.Join(",", done.LeftOutExperts));
        t.Span?.Dispose();
        foreach (var s in t.Subscribers) s.Tell(completed);
    }

    /// <summary>Fails (504) and drops the generations past their deadline.</summary>
    public void FailExpired(ContinuousSampler sampler)
    {
        var now = DateTime.UtcNow;
        foreach (var (id, t) in tracked.Where(p => p.Value.Deadline <= now).ToList())
        {
            var pending = sampler.PendingRows;
            sampler.Remove(id);
            ServingTelemetry.AddQueued(sampler.PendingRows - pending);
            tracked.Remove(id);
            t.Span?.SetStatus(ActivityStatusCode.Error, "timeout");
            t.Span?.Dispose();
            var failed = new GenerationFailed(id, 504,
                $"did not finish within the request timeout of {settings.RequestTimeout.TotalSeconds:0} s (experts unavailable)");
            foreach (var s in t.Subscribers) s.Tell(failed);
        }
    }

    public void Dispose()
    {
        foreach (var t in tracked.Values) t.Span?.Dispose();
    }
}
