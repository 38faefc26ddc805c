using Akka.Actor;
using Akka.Event;
using Islands.Diffusion;
using Islands.Diffusion.Distillation;
using Islands.Diffusion.IO;

namespace Islands.Actors.Serving;

/// <summary>
/// A serving node's distillation jobs: each is a directory (request.json, then the run's own files) under the node's
/// distillations directory, so an accepted job is on disk before it is answered. At most MaxRunning run at once (each is
/// a DistillationJobActor child), the rest wait in order. A job still unfinished when the node starts (it went down
/// mid-run) is queued again and resumes from its checkpoint. The same id with the same request answers the job's
/// status; with another request it is refused.
/// </summary>
public sealed class DistillationsActor : ReceiveActor
{
    public const string RequestFile = "request.json";
    /// <summary>Distillations computed at once on a node: each runs its own steps, and their score queries share the batch.</summary>
    public const int MaxRunning = 2;

    private sealed record StoredRequest(string RequestHash, DistillationRequest Request);

    private readonly string root;
    private readonly ServedPriorFactory connect;
    private readonly Dictionary<string, IActorRef> running = [];
    private readonly List<string> queued = [];
    private readonly ILoggingAdapter log = Context.GetLogger();

    /// <param name="connect">Opens the served prior for a job (its task calls it, with the job's cancellation).</param>
    public static Props Props(string root, ServedPriorFactory connect) =>
        Akka.Actor.Props.Create(() => new DistillationsActor(root, connect));

    public DistillationsActor(string root, ServedPriorFactory connect)
    {
        this.root = root;
        this.connect = connect;
        Receive<StartDistillation>(start =>
        {
            try
            {
                OnStart(start);
            }
            catch (Exception e) when (e is IslandsException or IOException)
            {
                Sender.Tell(new DistillationRefused(start.Id, 500, $"distillation {start.Id}: {e.Message}"));
            }
        });
        Receive<GetDistillation>(g =>
        {
            if (running.TryGetValue(g.Id, out var job)) job.Forward(g);
            else Sender.Tell(SafeStatusOf(g.Id));
        });
        Receive<CancelDistillation>(c =>
        {
            if (running.TryGetValue(c.Id, out var job))
            {
                job.Forward(c);
                return;
            }
            if (queued.Remove(c.Id)) AtomicFile.Write(Path.Combine(Directory(c.Id), DistillationJobActor.CancelledFile), _ => { });
            Sender.Tell(SafeStatusOf(c.Id));
        });
        Receive<Terminated>(t =>
        {
            var id = t.ActorRef.Path.Name;
            running.Remove(id);
            // A job's actor that stopped without recording an end (it threw) failed; its checkpoint stays for a retry.
            if (!SafeStatusOf(id).Finished)
                Json.WriteAtomic(Path.Combine(Directory(id), DistillationJobActor.FailedFile),
                    new DistillationFailure("the job stopped before its end; see the serving node's log"));
            Launch();
        });
    }

    /// <summary>A failing job is stopped, never restarted: its run's task may still be finishing on the same directory.</summary>
    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(e =>
    {
        log.Error(e, "a distillation job failed");
        return Directive.Stop;
    });

    protected override void PreStart()
    {
        if (!System.IO.Directory.Exists(root)) return;
        foreach (var dir in System.IO.Directory.GetDirectories(root).Order(StringComparer.Ordinal))
        {
            var id = Path.GetFileName(dir);
            if (File.Exists(Path.Combine(dir, RequestFile)) && !SafeStatusOf(id).Finished)
            {
                log.Info("distillation {0}: unfinished when this node stopped; resuming it", id);
                queued.Add(id);
            }
        }
        Launch();
    }

    private string Directory(string id) => Path.Combine(root, id);

    private void OnStart(StartDistillation start)
    {
        var path = Path.Combine(Directory(start.Id), RequestFile);
        if (File.Exists(path))
        {
            var stored = Json.Read<StoredRequest>(path);
            if (stored.RequestHash != start.RequestHash)
            {
                Sender.Tell(new DistillationRefused(start.Id, 422, "this Idempotency-Key was already used for a different distillation"));
                return;
            }
            var known = running.TryGetValue(start.Id, out _) ? null : StatusOf(start.Id);
            // The same request again: answer the job as it stands; one that failed is run again (from its checkpoint).
            if (known is { Phase: "failed" })
            {
                File.Delete(Path.Combine(Directory(start.Id), DistillationJobActor.FailedFile));
                Enqueue(start.Id);
            }
            if (known is null) running[start.Id].Forward(new GetDistillation(start.Id));
            else Sender.Tell(StatusOf(start.Id));
            return;
        }
        System.IO.Directory.CreateDirectory(Directory(start.Id));
        Json.WriteAtomic(path, new StoredRequest(start.RequestHash, start.Request));
        Enqueue(start.Id);
        Sender.Tell(StatusOf(start.Id));
    }

    private void Enqueue(string id)
    {
        if (!queued.Contains(id) && !running.ContainsKey(id)) queued.Add(id);
        Launch();
    }

    private void Launch()
    {
        while (running.Count < MaxRunning && queued.Count > 0)
        {
            var id = queued[0];
            queued.RemoveAt(0);
            var stored = Json.Read<StoredRequest>(Path.Combine(Directory(id), RequestFile));
            var job = Context.ActorOf(DistillationJobActor.Props(id, stored.Request, Directory(id), connect), id);
            Context.Watch(job);
            running[id] = job;
        }
    }

    /// <summary>A job whose files cannot be read (damaged by hand, a full disk) is failed, with the reason: never a crash of this actor.</summary>
    private DistillationStatus SafeStatusOf(string id)
    {
        try
        {
            return StatusOf(id);
        }
        catch (Exception e) when (e is IslandsException or IOException)
        {
            return new DistillationStatus(id, "failed", "", 0, 0, float.NaN, $"its files cannot be read: {e.Message}", null, null);
        }
    }

    /// <summary>A job not running here, as its directory tells.</summary>
    private DistillationStatus StatusOf(string id)
    {
        var dir = Directory(id);
        var requestPath = Path.Combine(dir, RequestFile);
        if (!File.Exists(requestPath)) return new DistillationStatus(id, "unknown", "", 0, 0, float.NaN, null, null, null);
        var config = Json.Read<StoredRequest>(requestPath).Request.Config;
        var summaryPath = Path.Combine(dir, DistillationRun.SummaryFile);
        var summary = File.Exists(summaryPath) ? Json.Read<DistillationSummary>(summaryPath) : null;
        var grid = Path.Combine(dir, DistillationRun.GridFile);
        var preview = File.Exists(grid) ? File.ReadAllBytes(grid) : null;
        var (phase, detail) = summary is { Completed: true } ? ("completed", null)
            : File.Exists(Path.Combine(dir, DistillationJobActor.FailedFile))
                ? ("failed", Json.Read<DistillationFailure>(Path.Combine(dir, DistillationJobActor.FailedFile)).Detail)
            : File.Exists(Path.Combine(dir, DistillationJobActor.CancelledFile)) ? ("cancelled", null)
            : running.ContainsKey(id) ? ("running", (string?)null) : ("queued", null);
        var step = summary?.Step ?? 0;
        var servedPath = Path.Combine(dir, DistillationJobActor.ServedFile);
        var served = File.Exists(servedPath) ? Json.Read<DistillationServing>(servedPath) : new DistillationServing(0, 0);
        return new DistillationStatus(id, phase, config.StageAt(Math.Max(0, step - 1)), step, config.Steps, summary?.FinalDirection ?? float.NaN,
            detail, summary, preview, served.DegradedRows, served.Retries);
    }
}
