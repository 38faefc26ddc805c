using Akka.Actor;
using Islands.Diffusion;
using Islands.Diffusion.Routing;
using Islands.Diffusion.Sampling;
using Islands.Diffusion.Serving;

namespace Islands.Actors.Serving;

/// <summary>
/// The router's book of score queries: who asked, the deadline, and the checkpoints that answered. A query is admitted
/// to the continuous batch like a generation of one step, so its rows share plans (and experts' batches) with
/// generations'; plain state that the router actor owns and calls from its mailbox.
/// </summary>
internal sealed class ScoreQueries(ServingSettings settings)
{
    private sealed record Pending(IActorRef Sender, DateTime Deadline, DateTime Started, Dictionary<string, ServedCheckpoint> Checkpoints);

    private readonly Dictionary<string, Pending> pending = [];

    /// <summary>
    /// Admits a query, or answers its refusal (400 for bad rows). A query sent again under its id (its sender gave up
    /// waiting) is the same query: the new sender gets its answer, and its rows are not computed twice.
    /// </summary>
    public bool Admit(ScoreQuery query, IActorRef sender, ContinuousSampler sampler)
    {
        if (pending.TryGetValue(query.Id, out var running))
        {
            pending[query.Id] = running with { Sender = sender };
            return false;
        }
        try
        {
            var spec = new ScoreSpec(query.T.Length, query.T, query.Classes, query.Cfg, RoutingStrategy.Parse(query.Strategy));
            sampler.AdmitScores(query.Id, spec, query.Payload);
        }
        catch (ConfigException e)
        {
            sender.Tell(new GenerationFailed(query.Id, 400, e.Message));
            return false;
        }
        var now = DateTime.UtcNow;
        pending[query.Id] = new Pending(sender, now + settings.RequestTimeout, now, []);
        ServingTelemetry.AddQueued(query.T.Length);
        return true;
    }

    /// <summary>Records the checkpoints of answered rows, and answers the queries that completed.</summary>
    public void Report(StepOutcome outcome, IEnumerable<ServedCheckpoint> checkpoints, ContinuousSampler sampler, PublishedModel? router)
    {
        var answered = checkpoints.ToList();
        foreach (var g in outcome.Advanced)
            if (g.Score is not null && pending.TryGetValue(g.Id, out var p))
                foreach (var c in answered) p.Checkpoints[c.Job] = c;
        foreach (var done in outcome.Completed)
        {
            if (!pending.Remove(done.Id, out var p)) continue;
            var used = p.Checkpoints.Values.OrderBy(c => c.Job, StringComparer.Ordinal).ToList();
            if (router is not null) used.Add(new ServedCheckpoint("router", router.Step, router.ManifestSha256));
            var (c, h, w) = sampler.Shape;
            p.Sender.Tell(new ScoreAnswer(done.Id, (int)c, (int)h, (int)w, [.. done.Routing.Select(r => r.Length > 0 ? r[0] : -1)],
                done.LeftOutExperts, used, (DateTime.UtcNow - p.Started).TotalSeconds) { Payload = GuidedVelocity.ToBytes(done.Samples) });
        }
    }

    /// <summary>Fails (504) and drops the queries past their deadline.</summary>
    public void FailExpired(ContinuousSampler sampler)
    {
        var now = DateTime.UtcNow;
        foreach (var (id, p) in pending.Where(p => p.Value.Deadline <= now).ToList())
        {
            var before = sampler.PendingRows;
            sampler.Remove(id);
            ServingTelemetry.AddQueued(sampler.PendingRows - before);
            pending.Remove(id);
            p.Sender.Tell(new GenerationFailed(id, 504,
                $"score query did not finish within the request timeout of {settings.RequestTimeout.TotalSeconds:0} s (experts unavailable)"));
        }
    }
}
