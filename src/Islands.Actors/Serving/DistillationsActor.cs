using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using Islands.Diffusion;
using Islands.Diffusion.Distillation;
using Islands.Diffusion.IO;

namespace Islands.Actors.Serving;

/// <summary>
/// A serving node's distillation jobs: each is a directory (request.json, then the run's own files) under the node's
/// distillations directory, so an accepted job is on disk before it is answered. At most MaxRunning run at once (each is
/// a DistillationJobActor child), the rest wait in order. A job unfinished when its owner left the cluster (the node
/// went down mid-run) is adopted, by that node when it comes back or, where the directory is shared, by one survivor
/// (<see cref="DistillationOwner"/>), and resumes from its checkpoint. Status and cancellation work from any node
/// that sees the directory: a cancellation is a marker file the owner's job watches. The same id with the same
/// request answers the job's status; with another request it is refused.
/// </summary>
public sealed class DistillationsActor : ReceiveActor, IWithTimers
{
    private sealed class AdoptTick
    {
        public static readonly AdoptTick Instance = new();
    }

    public const string RequestFile = "request.json";
    /// <summary>Distillations computed at once on a node: each runs its own steps, and their score queries share the batch.</summary>
    public const int MaxRunning = 2;

    private sealed record StoredRequest(string RequestHash, DistillationRequest Request);

    private readonly string root;
    private readonly ServedPriorFactory connect;
    private readonly Dictionary<string, IActorRef> running = [];
    private readonly List<string> queued = [];
    private readonly ILoggingAdapter log = Context.GetLogger();
    private readonly Cluster cluster = Cluster.Get(Context.System);

    public ITimerScheduler Timers { get; set; } = null!;

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
            // Queued here, or running on another node (whose job sees the marker within a second).
            if (queued.Remove(c.Id) || SafeStatusOf(c.Id) is { Finished: false, Phase: not "unknown" })
                AtomicFile.Write(Path.Combine(Directory(c.Id), DistillationJobActor.CancelledFile), _ => { });
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
        Receive<ClusterEvent.IMemberEvent>(_ => Adopt());
        Receive<AdoptTick>(_ => Adopt());
    }

    /// <summary>A failing job is stopped, never restarted: its run's task may still be finishing on the same directory.</summary>
    protected override SupervisorStrategy SupervisorStrategy() => new OneForOneStrategy(e =>
    {
        log.Error(e, "a distillation job failed");
        return Directive.Stop;
    });

    protected override void PreStart()
    {
        cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.IMemberEvent));
        // Membership events cover a departure; the tick covers a job whose directory appeared later (a shared volume).
        Timers.StartPeriodicTimer("adopt", AdoptTick.Instance, TimeSpan.FromSeconds(5));
    }

    protected override void PostStop() => cluster.Unsubscribe(Self);

    private DistillationOwner SelfOwner => new(cluster.SelfAddress.ToString(), cluster.SelfUniqueAddress.Uid);

    private bool IsMember(DistillationOwner owner) => cluster.State.Members.Any(m =>
        m.UniqueAddress.Uid == owner.Uid && m.Address.ToString() == owner.Address && m.Status is not (MemberStatus.Down or MemberStatus.Removed));

    /// <summary>Queues the unfinished jobs whose owner is no longer a member and that fall to this node.</summary>
    private void Adopt()
    {
        if (cluster.SelfMember.Status != MemberStatus.Up || !System.IO.Directory.Exists(root)) return;
        var lowest = cluster.State.Members.Where(m => m.Status == MemberStatus.Up).OrderBy(m => m.Address, Member.AddressOrdering).FirstOrDefault();
        var adopter = lowest is not null && lowest.UniqueAddress.Equals(cluster.SelfUniqueAddress);
        var self = SelfOwner;
        foreach (var dir in System.IO.Directory.GetDirectories(root).Order(StringComparer.Ordinal))
        {
            var id = Path.GetFileName(dir);
            if (running.ContainsKey(id) || queued.Contains(id) || !File.Exists(Path.Combine(dir, RequestFile))) continue;
            try
            {
                var owner = DistillationOwner.Read(dir);
                if (owner is not null && (owner.Uid == self.Uid && owner.Address == self.Address || IsMember(owner))) continue;
                if (SafeStatusOf(id).Finished) continue;
                if (!(adopter || owner?.Address == self.Address) || !DistillationOwner.Claim(dir, owner)) continue;
                log.Info("distillation {0}: its node {1} left the cluster; resuming it here", id, owner?.Address ?? "(none)");
                Enqueue(id);
            }
            catch (Exception e) when (e is IslandsException or IOException)
            {
                log.Warning("distillation {0}: cannot read its owner ({1})", id, e.Message);
            }
        }
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
        if (queued.Contains(id) || running.ContainsKey(id)) return;
        // Owned from the moment it waits here, so that no other node adopts a job queued on a live one.
        SelfOwner.Write(Directory(id));
        queued.Add(id);
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
            : running.ContainsKey(id) || DistillationOwner.Read(dir) is { } owner && IsMember(owner) && !queued.Contains(id)
                ? ("running", (string?)null)
                : ("queued", null);
        var step = summary?.Step ?? 0;
        var servedPath = Path.Combine(dir, DistillationJobActor.ServedFile);
        var served = File.Exists(servedPath) ? Json.Read<DistillationServing>(servedPath) : new DistillationServing(0, 0);
        return new DistillationStatus(id, phase, config.StageAt(Math.Max(0, step - 1)), step, config.Steps, summary?.FinalDirection ?? float.NaN,
            detail, summary, preview, served.DegradedRows, served.Retries);
    }
}
