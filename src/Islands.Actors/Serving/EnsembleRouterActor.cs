using System.Diagnostics;
using System.Text.Json.Serialization;
using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Event;
using Islands.Diffusion;
using Islands.Diffusion.Routing;
using Islands.Diffusion.Sampling;
using Islands.Diffusion.Serving;
using Tensor = TorchSharp.torch.Tensor;

namespace Islands.Actors.Serving;

/// <summary>A generation as clients state it (validated by the API before it gets here).</summary>
/// <param name="Sampler">The ODE stepper, euler or heun; null is euler (and keeps the digest of requests stored before it existed).</param>
public sealed record GenerationRequest(int Count, long[]? Classes, int Steps, double Cfg, string Strategy, long Seed,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Sampler = null);

/// <summary>Start (or join) generation Id. The sender receives accepted, progress, and completed or failed.</summary>
/// <param name="RequestHash">Digest of the request; the same Id with a different request is refused (Idempotency-Key reuse).</param>
public sealed record Generate(string Id, string Ensemble, GenerationRequest Request, string RequestHash, string? TraceParent) : IIslandsMessage;

public sealed record GenerationAccepted(string Id, int QueuedImages) : IIslandsMessage;

public sealed record GenerationProgress(string Id, int Step, int Steps, int[] LeftOutExperts) : IIslandsMessage;

public sealed record ServedCheckpoint(string Job, long Step, string ManifestSha256);

/// <summary>
/// The images as raw uint8 [Count, C, H, W] in the payload, with the routing of every image at every step.
/// NonFiniteImages counts the images whose final state held a NaN or an infinity (their pixels are then meaningless);
/// results stored before it existed read as 0.
/// </summary>
public sealed record GenerationCompleted(string Id, string Ensemble, GenerationRequest Request, string RequestHash, int Channels, int Height, int Width,
    int ExpertCount, int[] LeftOutExperts, int[][] Routing, int RetriedRowSteps, double QueueSeconds, double TotalSeconds, IReadOnlyList<ServedCheckpoint> Checkpoints,
    DateTimeOffset CompletedUtc, int NonFiniteImages = 0) : IPayloadMessage
{
    [JsonIgnore] public byte[] Payload { get; init; } = [];
    public IPayloadMessage WithPayload(byte[] payload) => this with { Payload = payload };
}

/// <summary>Status is the HTTP status the API answers with (409 key reuse, 503 nothing to serve, 504 too slow).</summary>
public sealed record GenerationFailed(string Id, int Status, string Reason) : IIslandsMessage;

public sealed record GetGeneration(string Id, string Ensemble) : IIslandsMessage;

/// <summary>Phase: queued, running, completed or unknown (this router has not seen it).</summary>
public sealed record GenerationState(string Id, string Phase, int Step, int Steps) : IIslandsMessage;

/// <summary>
/// A sharded entity per ensemble: holds the router network and runs the sampling loop of every request for that
/// ensemble as one continuous batch. Each step it asks the sampler entities of the selected experts for the velocities
/// of their rows, waits at most the expert deadline, and combines what came back (the core renormalises over the experts
/// that answered). An expert that missed a deadline is left out for a cool-down, then tried again, so full service
/// resumes by itself once its shard has moved. A row is applied as soon as its own experts have answered; a step that
/// waits longer than the straggler factor times the experts' typical answer time no longer holds back the next one,
/// which leaves out the rows that need an expert still busy, so a slow expert delays only the images routed to it.
/// Finished results are stored for idempotent retries.
/// </summary>
public sealed class EnsembleRouterActor : ReceiveActor, IWithTimers
{
    public const string RegionName = "router";

    private sealed record RunStep
    {
        public static readonly RunStep Instance = new();
    }

    private sealed record StepDeadline(long PlanId);

    private sealed record StragglerCheck(long PlanId);

    private sealed record SweepResults
    {
        public static readonly SweepResults Instance = new();
    }

    private sealed class Tracked(Generate request, GenerationSpec spec, DateTime deadline, Activity? span)
    {
        public Generate Request { get; } = request;
        public GenerationSpec Spec { get; } = spec;
        public DateTime Deadline { get; } = deadline;
        public Activity? Span { get; } = span;
        public List<IActorRef> Subscribers { get; } = [];
        public Dictionary<string, ServedCheckpoint> Checkpoints { get; } = [];
        /// <summary>Steps every image has done, as last reported (a plan applied in parts may advance some images only).</summary>
        public int LastReportedStep { get; set; }
    }

    private sealed class InFlight(StepPlan plan, Activity? span) : IDisposable
    {
        public StepPlan Plan { get; } = plan;
        public Activity? Span { get; } = span;
        public Stopwatch Clock { get; } = Stopwatch.StartNew();
        public Dictionary<int, Tensor> Answers { get; } = [];
        public Dictionary<int, ServedCheckpoint> Checkpoints { get; } = [];
        public HashSet<int> Awaiting { get; } = [.. plan.Work.Select(w => w.Expert)];
        public HashSet<int> AppliedRows { get; } = [];
        /// <summary>Waiting longer than its experts usually take: the next step need not wait for it.</summary>
        public bool Straggling { get; set; }
        public int DegradedRows { get; set; }
        public int StalledRows { get; set; }

        public void Dispose()
        {
            Span?.Dispose();
            Plan.Dispose();
            foreach (var answer in Answers.Values) answer.Dispose();
        }
    }

    private readonly string ensemble;
    private readonly ServingSettings settings;
    private readonly IActorRef registry;
    private readonly IActorRef samplers;
    private readonly GenerationResultStore results;
    private readonly ILoggingAdapter log = Context.GetLogger();
    private readonly Dictionary<string, Tracked> tracked = [];
    private readonly List<(Generate Request, IActorRef Sender)> waiting = [];
    private readonly Dictionary<int, DateTime> downUntil = [];
    /// <summary>Each expert's answer time, a moving average (seconds): what "usually" means for a straggler.</summary>
    private readonly Dictionary<int, double> answerSeconds = [];
    private readonly Dictionary<long, InFlight> steps = [];
    private readonly Dictionary<string, GenerationCompleted> recent = [];
    private readonly Queue<string> recentOrder = new();
    private PublishedModelsSnapshot? snapshot;
    private RouterNet? router;
    private PublishedModel? routerModel;
    private ContinuousSampler? sampler;
    private string? notReady = "waiting for the model registry";

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(string ensemble, ServingSettings settings, IActorRef registry, IActorRef samplers) =>
        Akka.Actor.Props.Create(() => new EnsembleRouterActor(ensemble, settings, registry, samplers)).WithDispatcher(ServingSettings.TorchDispatcher);

    public EnsembleRouterActor(string ensemble, ServingSettings settings, IActorRef registry, IActorRef samplers)
    {
        this.ensemble = ensemble;
        this.settings = settings;
        this.registry = registry;
        this.samplers = samplers;
        results = new GenerationResultStore(settings.ResultsDirectory);
        Receive<PublishedModelsSnapshot>(OnSnapshot);
        Receive<Generate>(g => OnGenerate(g, Sender));
        Receive<GetGeneration>(OnGetGeneration);
        Receive<RunStep>(_ => Step());
        Receive<SweepResults>(_ =>
        {
            var deleted = results.DeleteOlderThan(settings.ResultRetention);
            if (deleted > 0) log.Info("ensemble {0}: deleted {1} stored results older than {2}", ensemble, deleted, settings.ResultRetention);
        });
        Receive<ExpertVelocityReply>(OnReply);
        Receive<ExpertVelocityFailed>(OnFailed);
        Receive<StepDeadline>(d =>
        {
            if (!steps.TryGetValue(d.PlanId, out var current)) return;
            foreach (var expert in current.Awaiting)
            {
                log.Warning("ensemble {0}: expert {1} missed the {2} deadline; leaving it out for {3}", ensemble, expert, settings.ExpertDeadline, settings.ExpertCooldown);
                LeaveOut(expert);
            }
            current.Awaiting.Clear();
            Advance(current);
        });
        Receive<StragglerCheck>(c =>
        {
            if (!steps.TryGetValue(c.PlanId, out var current)) return;
            current.Straggling = true;
            ServingTelemetry.StragglingSteps.Add(1);
            current.Span?.SetTag("islands.straggling", string.Join(",", current.Awaiting.Order()));
            Self.Tell(RunStep.Instance);
        });
    }

    protected override void PreStart()
    {
        Context.System.EventStream.Subscribe(Self, typeof(PublishedModelsSnapshot));
        registry.Tell(GetPublishedModels.Instance);
        Self.Tell(SweepResults.Instance);
        Timers.StartPeriodicTimer("sweep-results", SweepResults.Instance, TimeSpan.FromHours(1));
    }

    protected override void PostStop()
    {
        Context.System.EventStream.Unsubscribe(Self);
        if (sampler is not null) ServingTelemetry.AddQueued(-sampler.PendingRows);
        foreach (var t in tracked.Values) t.Span?.Dispose();
        foreach (var current in steps.Values) current.Dispose();
        foreach (var id in tracked.Keys) sampler?.Remove(id);
        router?.Dispose();
    }

    private void OnSnapshot(PublishedModelsSnapshot next)
    {
        snapshot = next;
        if (next.Router is null) notReady = $"no router has been published in {next.Store} yet";
        else if (next.Experts.Count == 0) notReady = $"no expert has been published in {next.Store} yet";
        else if (routerModel?.ManifestSha256 != next.Router.ManifestSha256 && steps.Count == 0 && (sampler is null || sampler.Active.Count == 0)) LoadRouter(next);
        else if (router is not null) notReady = null;
        if (notReady is null)
        {
            foreach (var (request, sender) in waiting) OnGenerate(request, sender);
        }
        else
        {
            foreach (var (request, sender) in waiting) sender.Tell(new GenerationFailed(request.Id, 503, notReady));
        }
        waiting.Clear();
    }

    private void LoadRouter(PublishedModelsSnapshot next)
    {
        try
        {
            var shape = ServedModels.ImageShape(next.Experts[0]);
            if (settings.FrameProblem(shape.C * shape.H * shape.W, ServingSettings.MaxImagesPerRequest) is { } tooBig)
            {
                notReady = tooBig;
                log.Error($"ensemble {ensemble}: {tooBig}");
                return;
            }
            var (net, config) = ServedModels.LoadRouter(next.Router!, shape.C * shape.H * shape.W);
            router?.Dispose();
            router = net;
            routerModel = next.Router;
            sampler = new ContinuousSampler(net, shape);
            notReady = null;
            log.Info($"ensemble {ensemble}: router {next.Router!.CheckpointDirectory} (step {next.Router.Step}) over {config.ExpertCount} experts, images {shape.C}x{shape.H}x{shape.W}");
        }
        catch (IslandsException e)
        {
            notReady = $"the published router cannot be loaded: {e.Message}";
            log.Error($"ensemble {ensemble}: {notReady}");
        }
    }

    private void OnGenerate(Generate request, IActorRef sender)
    {
        if (tracked.TryGetValue(request.Id, out var running))
        {
            if (running.Request.RequestHash != request.RequestHash) sender.Tell(IdempotencyConflict(request.Id));
            else
            {
                if (!running.Subscribers.Contains(sender)) running.Subscribers.Add(sender);
                sender.Tell(new GenerationAccepted(request.Id, sampler?.PendingRows ?? 0));
            }
            return;
        }
        if (Finished(request.Id) is { } done)
        {
            sender.Tell(done.RequestHash == request.RequestHash ? done : IdempotencyConflict(request.Id));
            return;
        }
        if (snapshot is null)
        {
            waiting.Add((request, sender));
            return;
        }
        if (notReady is not null || sampler is null)
        {
            sender.Tell(new GenerationFailed(request.Id, 503, notReady ?? "the router is not loaded"));
            return;
        }
        GenerationSpec spec;
        try
        {
            spec = new GenerationSpec(request.Request.Count, request.Request.Classes, request.Request.Steps, request.Request.Cfg,
                RoutingStrategy.Parse(request.Request.Strategy), request.Request.Seed, request.Request.Sampler ?? FlowStep.Euler);
            sampler.Admit(request.Id, spec);
        }
        catch (ConfigException e)
        {
            sender.Tell(new GenerationFailed(request.Id, 400, e.Message));
            return;
        }
        var span = ServingTelemetry.StartDetached("generation", request.TraceParent);
        span?.SetTag("islands.generation", request.Id);
        span?.SetTag("islands.count", spec.Count);
        var entry = new Tracked(request, spec, DateTime.UtcNow + settings.RequestTimeout, span);
        entry.Subscribers.Add(sender);
        tracked[request.Id] = entry;
        ServingTelemetry.AddQueued(spec.Count);
        sender.Tell(new GenerationAccepted(request.Id, sampler.PendingRows));
        if (!MayPlan() || Timers.IsTimerActive("batch")) return;
        if (sampler.ReadyRows >= settings.MaxBatchRows) Self.Tell(RunStep.Instance);
        else Timers.StartSingleTimer("batch", RunStep.Instance, settings.MaxWait);
    }

    /// <summary>The answer to an Idempotency-Key reused for a different request (the API answers it too, when it knows first).</summary>
    public static GenerationFailed IdempotencyConflict(string id) =>
        new(id, 422, "this Idempotency-Key was already used for a different request");

    private GenerationCompleted? Finished(string id) => recent.TryGetValue(id, out var done) ? done : results.TryLoad(id);

    private void OnGetGeneration(GetGeneration query)
    {
        if (tracked.TryGetValue(query.Id, out var t))
        {
            var generation = sampler!.Active.FirstOrDefault(g => g.Id == query.Id);
            var stepNow = generation?.Step ?? 0;
            Sender.Tell(new GenerationState(query.Id, generation?.QueueSeconds is null ? "queued" : "running", stepNow, t.Spec.Steps));
        }
        else if (Finished(query.Id) is { } done) Sender.Tell(new GenerationState(query.Id, "completed", done.Request.Steps, done.Request.Steps));
        else Sender.Tell(new GenerationState(query.Id, "unknown", 0, 0));
    }

    private bool[] Availability()
    {
        var now = DateTime.UtcNow;
        return Enumerable.Range(0, sampler!.ExpertCount)
            .Select(k => snapshot?.Expert(k) is not null && (!downUntil.TryGetValue(k, out var until) || until <= now)).ToArray();
    }

    private void LeaveOut(int expert)
    {
        downUntil[expert] = DateTime.UtcNow + settings.ExpertCooldown;
        ServingTelemetry.ExpertTimeouts.Add(1, new KeyValuePair<string, object?>("expert", expert));
    }

    /// <summary>A new step may start when no step is out or every one out is straggling.</summary>
    private bool MayPlan() => steps.Values.All(s => s.Straggling);

    private void Step()
    {
        if (sampler is null) return;
        FailExpired();
        if (!MayPlan() || sampler.ReadyRows == 0) return;
        // An expert still computing a straggling step gets no more rows until it answers: the images routed to it wait
        // in one batch instead of queueing up behind it.
        var busy = steps.Values.SelectMany(s => s.Awaiting).ToHashSet();
        var plan = sampler.Plan(settings.MaxBatchRows, Availability(), busy);
        if (plan is null)
        {
            // Every expert is left out or unpublished: try again shortly (requests still fail at their deadline, never hang).
            // Otherwise every ready image needs a busy expert, whose answer starts the next step.
            if (steps.Count == 0) Timers.StartSingleTimer("retry", RunStep.Instance, TimeSpan.FromMilliseconds(250));
            return;
        }
        var first = tracked[plan.Rows[0].Generation.Id];
        var links = plan.Rows.Select(r => r.Generation.Id).Distinct().Skip(1)
            .Select(id => tracked[id].Span).Where(s => s is not null).Select(s => new ActivityLink(s!.Context));
        var span = ServingTelemetry.StartDetached("router.step", first.Span?.Id ?? first.Request.TraceParent, links);
        span?.SetTag("islands.rows", plan.Rows.Count);
        steps[plan.Id] = new InFlight(plan, span);
        ServingTelemetry.BatchRows.Record(plan.Rows.Count);
        var traceParent = span?.Id;
        foreach (var work in plan.Work)
        {
            ServingTelemetry.ExpertSelections.Add(work.PlanRows.Length, new KeyValuePair<string, object?>("expert", work.Expert));
            samplers.Tell(new ExpertVelocityRequest(ensemble, work.Expert, plan.Id, work.T, work.Classes, work.Cfg, traceParent)
                { Payload = ExpertVelocity.ToBytes(work.X) });
        }
        Timers.StartSingleTimer(DeadlineTimer(plan.Id), new StepDeadline(plan.Id), settings.ExpertDeadline);
        if (StragglerAfter() is { } after) Timers.StartSingleTimer(StragglerTimer(plan.Id), new StragglerCheck(plan.Id), after);
    }

    private static string DeadlineTimer(long plan) => "deadline-" + plan.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static string StragglerTimer(long plan) => "straggler-" + plan.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// How long a step may wait before it is straggling: the straggler factor times the lower median of the experts'
    /// answer times (a median, so that one slow expert does not set the pace it is measured against); none before the
    /// first answers or when that would exceed the deadline.
    /// </summary>
    private TimeSpan? StragglerAfter()
    {
        if (settings.StragglerFactor <= 0 || answerSeconds.Count == 0) return null;
        var typical = answerSeconds.Values.Order().ElementAt((answerSeconds.Count - 1) / 2);
        var after = TimeSpan.FromSeconds(Math.Max(0.02, settings.StragglerFactor * typical));
        return after < settings.ExpertDeadline ? after : null;
    }

    private void OnReply(ExpertVelocityReply reply)
    {
        if (!steps.TryGetValue(reply.PlanId, out var current) || !current.Awaiting.Remove(reply.Expert)) return;
        var seconds = current.Clock.Elapsed.TotalSeconds;
        answerSeconds[reply.Expert] = answerSeconds.TryGetValue(reply.Expert, out var before) ? 0.8 * before + 0.2 * seconds : seconds;
        try
        {
            current.Answers[reply.Expert] = ExpertVelocity.FromBytes(reply.Payload, current.Plan.Work.Single(w => w.Expert == reply.Expert).X.shape);
        }
        catch (ArgumentException e)
        {
            log.Warning("ensemble {0}: expert {1} answered a malformed velocity: {2}", ensemble, reply.Expert, e.Message);
            LeaveOut(reply.Expert);
            Advance(current);
            return;
        }
        current.Checkpoints[reply.Expert] = new ServedCheckpoint($"expert:{reply.Expert}", reply.Step, reply.ManifestSha256);
        Advance(current);
    }

    private void OnFailed(ExpertVelocityFailed failed)
    {
        if (!steps.TryGetValue(failed.PlanId, out var current) || !current.Awaiting.Remove(failed.Expert)) return;
        log.Warning("ensemble {0}: expert {1} cannot answer: {2}", ensemble, failed.Expert, failed.Reason);
        LeaveOut(failed.Expert);
        Advance(current);
    }

    /// <summary>Applies the rows of a step that wait for no expert any more; closes the step once none is left.</summary>
    private void Advance(InFlight current)
    {
        var plan = current.Plan;
        var rows = Enumerable.Range(0, plan.Rows.Count)
            .Where(r => !current.AppliedRows.Contains(r) && !plan.ExpertsOf(r).Any(current.Awaiting.Contains)).ToList();
        if (rows.Count > 0)
        {
            current.AppliedRows.UnionWith(rows);
            var before = sampler!.PendingRows;
            var outcome = sampler.Apply(plan, current.Answers, rows);
            current.DegradedRows += outcome.DegradedRows;
            current.StalledRows += outcome.StalledRows;
            ServingTelemetry.AddQueued(sampler.PendingRows - before);
            Report(outcome, current.Checkpoints.Values);
        }
        if (current.Awaiting.Count == 0)
        {
            steps.Remove(plan.Id);
            current.Dispose();
            Timers.Cancel(DeadlineTimer(plan.Id));
            Timers.Cancel(StragglerTimer(plan.Id));
            current.Span?.SetTag("islands.degraded_rows", current.DegradedRows);
            current.Span?.SetTag("islands.stalled_rows", current.StalledRows);
            current.Span?.Dispose();
        }
        if (sampler!.ReadyRows > 0) Self.Tell(RunStep.Instance);
        else if (steps.Count == 0 && sampler.PendingRows == 0 && snapshot is not null && routerModel?.ManifestSha256 != snapshot.Router?.ManifestSha256) OnSnapshot(snapshot);
    }

    private void Report(StepOutcome outcome, IEnumerable<ServedCheckpoint> checkpoints)
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
        foreach (var done in outcome.Completed) Finish(done);
    }

    private static int NonFiniteImages(float[] samples, int count)
    {
        if (count <= 0 || samples.Length == 0) return 0;
        var plane = samples.Length / count;
        var bad = 0;
        for (var i = 0; i < count; i++)
            if (HasNonFinite(samples.AsSpan(i * plane, plane))) bad++;
        return bad;
    }

    private static bool HasNonFinite(ReadOnlySpan<float> values)
    {
        foreach (var v in values)
            if (!float.IsFinite(v)) return true;
        return false;
    }

    private void Finish(CompletedGeneration done)
    {
        if (!tracked.TryGetValue(done.Id, out var t)) return;
        tracked.Remove(done.Id);
        var checkpoints = t.Checkpoints.Values.OrderBy(c => c.Job, StringComparer.Ordinal).ToList();
        if (routerModel is not null) checkpoints.Add(new ServedCheckpoint("router", routerModel.Step, routerModel.ManifestSha256));
        var (c, h, w) = sampler!.Shape;
        var completed = new GenerationCompleted(done.Id, ensemble, t.Request.Request, t.Request.RequestHash, (int)c, (int)h, (int)w, sampler.ExpertCount, done.LeftOutExperts,
            done.Routing, done.RetriedRowSteps, done.QueueSeconds, done.TotalSeconds, checkpoints, DateTimeOffset.UtcNow, NonFiniteImages(done.Samples, done.Spec.Count))
        { Payload = done.Pixels };
        try
        {
            results.Save(completed);
        }
        catch (IOException e)
        {
            log.Error("ensemble {0}: could not store result {1} in {2}: {3}", ensemble, done.Id, results.Directory, e.Message);
        }
        Remember(completed);
        if (done.LeftOutExperts.Length > 0) ServingTelemetry.DegradedResponses.Add(1);
        t.Span?.SetTag("islands.left_out", string.Join(",", done.LeftOutExperts));
        t.Span?.Dispose();
        foreach (var s in t.Subscribers) s.Tell(completed);
    }

    private void Remember(GenerationCompleted completed)
    {
        recent[completed.Id] = completed;
        recentOrder.Enqueue(completed.Id);
        while (recentOrder.Count > 64) recent.Remove(recentOrder.Dequeue());
    }

    private void FailExpired()
    {
        var now = DateTime.UtcNow;
        foreach (var (id, t) in tracked.Where(p => p.Value.Deadline <= now).ToList())
        {
            var pending = sampler!.PendingRows;
            sampler.Remove(id);
            ServingTelemetry.AddQueued(sampler.PendingRows - pending);
            tracked.Remove(id);
            t.Span?.SetStatus(ActivityStatusCode.Error, "timeout");
            t.Span?.Dispose();
            var failed = new GenerationFailed(id, 504, $"did not finish within the request timeout of {settings.RequestTimeout.TotalSeconds:0} s (experts unavailable)");
            foreach (var s in t.Subscribers) s.Tell(failed);
        }
    }

    /// <summary>Routes generation messages to the entity of their ensemble.</summary>
    public sealed class MessageExtractor(int shards) : HashCodeMessageExtractor(shards)
    {
        public override string? EntityId(object message) => message switch
        {
            Generate g => g.Ensemble,
            GetGeneration q => q.Ensemble,
            _ => null,
        };
    }
}
