using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Event;
using Islands.Diffusion;
using Islands.Diffusion.Sampling;
using Islands.Diffusion.Serving;

namespace Islands.Actors.Serving;

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

    private sealed record RunStep { public static readonly RunStep Instance = new(); }

    private sealed record StepDeadline(long PlanId);

    private sealed record StragglerCheck(long PlanId);

    private sealed record SweepResults { public static readonly SweepResults Instance = new(); }

    private readonly string ensemble;
    private readonly ServingSettings settings;
    private readonly IActorRef registry;
    private readonly IActorRef samplers;
    private readonly ILoggingAdapter log = Context.GetLogger();
    private readonly GenerationTracker generations;
    private readonly List<(IIslandsMessage Request, IActorRef Sender)> waiting = [];
    private readonly ScoreQueries scores;
    private readonly ExpertHealth health;
    private readonly Dictionary<long, StepInFlight> steps = [];
    private readonly EnsembleModels models;

    public ITimerScheduler Timers { get; set; } = null!;

    public static Props Props(string ensemble, ServingSettings settings, IActorRef registry, IActorRef samplers) =>
        Akka.Actor.Props.Create(() => new EnsembleRouterActor(ensemble, settings, registry, samplers))
            .WithDispatcher(ServingSettings.TorchDispatcher);

    public EnsembleRouterActor(string ensemble, ServingSettings settings, IActorRef registry, IActorRef samplers)
    {
        this.ensemble = ensemble;
        this.settings = settings;
        this.registry = registry;
        this.samplers = samplers;
        generations = new GenerationTracker(ensemble, settings, log);
        health = new ExpertHealth(settings.ExpertCooldown, settings.StragglerFactor);
        models = new EnsembleModels(ensemble, settings, log);
        scores = new ScoreQueries(settings);
        Receive<PublishedModelsSnapshot>(OnSnapshot);
        Receive<Generate>(g => OnGenerate(g, Sender));
        Receive<ScoreQuery>(q => OnScore(q, Sender));
        Receive<GetGeneration>(OnGetGeneration);
        Receive<RunStep>(_ => Step());
        Receive<SweepResults>(_ =>
        {
            var deleted = generations.Results.DeleteOlderThan(settings.ResultRetention);
            if (deleted > 0) log.Info("ensemble {0}: deleted {1} stored results older than {2}", ensemble, deleted, settings.ResultRetention);
        });
        Receive<ExpertVelocityReply>(OnReply);
        Receive<ExpertVelocityFailed>(OnFailed);
        Receive<StepDeadline>(d =>
        {
            if (!steps.TryGetValue(d.PlanId, out var current)) return;
            foreach (var expert in current.Awaiting)
            {
                log.Warning("ensemble {0}: expert {1} missed the {2} deadline; leaving it out for {3}", ensemble, expert, settings.ExpertDeadline,
                    settings.ExpertCooldown);
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
        if (Sampler is { } sampler) ServingTelemetry.AddQueued(-sampler.PendingRows);
        foreach (var current in steps.Values) current.Dispose();
        foreach (var id in Sampler?.Active.Select(g => g.Id).Distinct().ToList() ?? []) Sampler!.Remove(id);
        generations.Dispose();
        models.Dispose();
    }

    private ContinuousSampler? Sampler => models.Sampler;

    private void OnSnapshot(PublishedModelsSnapshot next)
    {
        models.Update(next, idle: steps.Count == 0 && (Sampler is null || Sampler.Active.Count == 0));
        foreach (var (request, sender) in waiting)
        {
            if (models.NotReady is not null)
                sender.Tell(new GenerationFailed(request is Generate g ? g.Id : ((ScoreQuery)request).Id, 503, models.NotReady));
            else if (request is Generate generate) OnGenerate(generate, sender);
            else OnScore((ScoreQuery)request, sender);
        }
        waiting.Clear();
    }

    private void OnGenerate(Generate request, IActorRef sender)
    {
        if (generations.TryAnswer(request, sender, Sampler?.PendingRows ?? 0)) return;
        if (models.Snapshot is null)
        {
            waiting.Add((request, sender));
            return;
        }
        if (models.NotReady is not null || Sampler is not { } sampler)
        {
            sender.Tell(new GenerationFailed(request.Id, 503, models.NotReady ?? "the router is not loaded"));
            return;
        }
        GenerationSpec spec;
        try
        {
            spec = request.Request.ToSpec();
            sampler.Admit(request.Id, spec);
        }
        catch (ConfigException e)
        {
            sender.Tell(new GenerationFailed(request.Id, 400, e.Message));
            return;
        }
        generations.Track(request, spec, sender);
        sender.Tell(new GenerationAccepted(request.Id, sampler.PendingRows));
        ScheduleStep(sampler);
    }

    /// <summary>A score query joins the continuous batch as a generation of one evaluation and is answered when its rows are.</summary>
    private void OnScore(ScoreQuery query, IActorRef sender)
    {
        if (models.Snapshot is null)
        {
            waiting.Add((query, sender));
            return;
        }
        if (models.NotReady is not null || Sampler is not { } sampler)
        {
            sender.Tell(new GenerationFailed(query.Id, 503, models.NotReady ?? "the router is not loaded"));
            return;
        }
        if (scores.Admit(query, sender, sampler)) ScheduleStep(sampler);
    }

    /// <summary>Plans now when a batch is full, else after the batching wait (unless a step is out).</summary>
    private void ScheduleStep(ContinuousSampler sampler)
    {
        if (!MayPlan() || Timers.IsTimerActive("batch")) return;
        if (sampler.ReadyRows >= settings.MaxBatchRows) Self.Tell(RunStep.Instance);
        else Timers.StartSingleTimer("batch", RunStep.Instance, settings.MaxWait);
    }

    /// <summary>The answer to an Idempotency-Key reused for a different request (the API answers it too, when it knows first).</summary>
    public static GenerationFailed IdempotencyConflict(string id) =>
        new(id, 422, "this Idempotency-Key was already used for a different request");

    private void OnGetGeneration(GetGeneration query) => Sender.Tell(generations.State(query.Id, Sampler));

    private bool[] Availability() => health.Availability(Sampler!.ExpertCount, k => models.Snapshot?.Expert(k) is not null);

    private void LeaveOut(int expert)
    {
        health.LeaveOut(expert);
        ServingTelemetry.ExpertTimeouts.Add(1, new KeyValuePair<string, object?>("expert", expert));
    }

    /// <summary>A new step may start when no step is out or every one out is straggling.</summary>
    private bool MayPlan() => steps.Values.All(s => s.Straggling);

    private void Step()
    {
        if (Sampler is not { } sampler) return;
        generations.FailExpired(sampler);
        scores.FailExpired(sampler);
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
        var span = generations.StartStep(plan);
        steps[plan.Id] = new StepInFlight(plan, span);
        ServingTelemetry.BatchRows.Record(plan.Rows.Count);
        var traceParent = span?.Id;
        foreach (var work in plan.Work)
        {
            ServingTelemetry.ExpertSelections.Add(work.PlanRows.Length, new KeyValuePair<string, object?>("expert", work.Expert));
            samplers.Tell(new ExpertVelocityRequest(ensemble, work.Expert, plan.Id, work.T, work.Classes, work.Cfg, traceParent)
                { Payload = GuidedVelocity.ToBytes(work.X) });
        }
        Timers.StartSingleTimer(DeadlineTimer(plan.Id), new StepDeadline(plan.Id), settings.ExpertDeadline);
        if (health.StragglerAfter(settings.ExpertDeadline) is { } after)
            Timers.StartSingleTimer(StragglerTimer(plan.Id), new StragglerCheck(plan.Id), after);
    }

    private static string DeadlineTimer(long plan) => "deadline-" + plan.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private static string StragglerTimer(long plan) => "straggler-" + plan.ToString(System.Globalization.CultureInfo.InvariantCulture);

    private void OnReply(ExpertVelocityReply reply)
    {
        if (!steps.TryGetValue(reply.PlanId, out var current) || !current.Awaiting.Remove(reply.Expert)) return;
        var seconds = current.Clock.Elapsed.TotalSeconds;
        health.Answered(reply.Expert, seconds);
        try
        {
            current.Answers[reply.Expert] = GuidedVelocity.FromBytes(reply.Payload, current.Plan.Work.Single(w => w.Expert == reply.Expert).X.shape);
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
    private void Advance(StepInFlight current)
    {
        var sampler = Sampler!;
        var rows = current.TakeReadyRows();
        if (rows.Count > 0)
        {
            var before = sampler.PendingRows;
            var outcome = sampler.Apply(current.Plan, current.Answers, rows);
            current.DegradedRows += outcome.DegradedRows;
            current.StalledRows += outcome.StalledRows;
            ServingTelemetry.AddQueued(sampler.PendingRows - before);
            generations.Report(outcome, current.Checkpoints.Values, sampler, models.Router);
            scores.Report(outcome, current.Checkpoints.Values, sampler, models.Router);
        }
        if (current.Awaiting.Count == 0)
        {
            steps.Remove(current.Plan.Id);
            Timers.Cancel(DeadlineTimer(current.Plan.Id));
            Timers.Cancel(StragglerTimer(current.Plan.Id));
            current.Dispose();
        }
        if (sampler.ReadyRows > 0) Self.Tell(RunStep.Instance);
        else if (steps.Count == 0 && sampler.PendingRows == 0 && models.RouterOutdated) OnSnapshot(models.Snapshot!);
    }

    /// <summary>Routes generation messages to the entity of their ensemble.</summary>
    public sealed class MessageExtractor(int shards) : HashCodeMessageExtractor(shards)
    {
        public override string? EntityId(object message) => message switch
        {
            Generate g => g.Ensemble,
            GetGeneration q => q.Ensemble,
            ScoreQuery s => s.Ensemble,
            _ => null,
        };
    }
}
