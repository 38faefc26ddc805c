using Akka.Actor;
using Akka.Event;

namespace Islands.Actors;

/// <summary>
/// The island's cluster singleton: it keeps one <see cref="TrainingJobActor"/> alive and restarts it with exponential
/// backoff when it stops on a journal failure (database down at start-up, a write that failed). Akka's BackoffSupervisor
/// would drop status requests while the job is down; this one answers them itself with the reason and the next retry,
/// so an operator sees "waiting for the journal" rather than silence.
/// </summary>
public sealed class JobSupervisor : ReceiveActor, IWithTimers
{
    private readonly IslandJobSettings settings;
    private readonly Props jobProps;
    private readonly ILoggingAdapter log = Context.GetLogger();
    private IActorRef? job;
    private int failures;
    private string? lastError;
    private DateTimeOffset? nextRetry;
    private bool stopping;
    private bool recovered;

    public ITimerScheduler Timers { get; set; } = null!;

    public JobSupervisor(IslandJobSettings settings, Props? jobProps = null)
    {
        this.settings = settings;
        this.jobProps = jobProps ?? TrainingJobActor.Props(settings);
        Receive<JournalUnavailable>(m => lastError = m.Reason);
        Receive<JobRecovered>(_ =>
        {
            if (failures > 0) log.Info("island {0}: journal reachable again after {1} failed attempts", settings.Island, failures);
            failures = 0;
            lastError = null;
            nextRetry = null;
            recovered = true;
        });
        Receive<Terminated>(t => t.ActorRef.Equals(job), _ => OnJobStopped());
        Receive<RestartJob>(_ => StartJob());
        Receive<GetJobStatus>(m =>
        {
            // A recovering persistent actor stashes commands until its journal answers, so until then the supervisor answers.
            if (job is not null && recovered) job.Forward(m);
            else if (job is not null)
                Sender.Tell(Waiting("recovering",
                    $"replaying the {settings.Journal} (attempt {failures + 1}){(lastError is null ? "" : $"; last failure: {lastError}")}"));
            else
                Sender.Tell(Waiting("waiting-for-journal",
                    $"{settings.Journal}: {lastError ?? "the job actor stopped"}; attempt {failures + 1} at {nextRetry:HH:mm:ss}"));
        });
        Receive<GetJobHistory>(m =>
        {
            if (job is not null && recovered) job.Forward(m);
            else Sender.Tell(new JobHistory(settings.Island, settings.Job.Name, [], [], [], 0, failures, 0));
        });
        Receive<StopTraining>(m =>
        {
            stopping = true;
            // From the singleton manager (its termination message) nobody waits for the reply; from anyone else, forward.
            if (job is not null && Sender.Equals(Context.Parent)) job.Tell(m, Self);
            else if (job is not null) job.Forward(m);
            else Context.Stop(Self);
        });
        Receive<TrainingStopped>(_ => { });
        ReceiveAny(m => job?.Forward(m));
    }

    public static Props Props(IslandJobSettings settings) => Akka.Actor.Props.Create(() => new JobSupervisor(settings, null));

    protected override void PreStart() => StartJob();

    private JobStatus Waiting(string phase, string detail) =>
        new(settings.Island, settings.Job.Name, phase, 0, settings.Job.TotalSteps, null, 0, null, 0, failures, [], null, detail);

    private void StartJob()
    {
        recovered = false;
        job = Context.Watch(Context.ActorOf(jobProps, "job"));
    }

    private void OnJobStopped()
    {
        job = null;
        if (stopping)
        {
            Context.Stop(Self);
            return;
        }
        failures++;
        IslandTelemetry.Restarts.Add(1, IslandTelemetry.Tag(settings.Island));
        var exponent = Math.Min(failures - 1, 16);
        var delay = TimeSpan.FromTicks(Math.Min(settings.MaxBackoff.Ticks, settings.MinBackoff.Ticks * (1L << exponent)));
        delay += TimeSpan.FromTicks((long)(delay.Ticks * 0.2 * Random.Shared.NextDouble()));
        nextRetry = DateTimeOffset.UtcNow + delay;
        log.Error("island {0}: training job stopped ({1}: {2}); attempt {3} in {4:0.0} s", settings.Island, settings.Journal,
            lastError ?? "no reason given", failures + 1, delay.TotalSeconds);
        Timers.StartSingleTimer("restart", RestartJob.Instance, delay);
    }

    /// <summary>Job to supervisor: its journal failed (recovery or a write); the job is about to stop.</summary>
    public sealed record JournalUnavailable(string Reason) : INoSerializationVerificationNeeded;

    /// <summary>Job to supervisor: recovery from the journal succeeded, so the backoff starts over.</summary>
    public sealed record JobRecovered : INoSerializationVerificationNeeded
    {
        public static readonly JobRecovered Instance = new();
    }

    private sealed record RestartJob : INoSerializationVerificationNeeded
    {
        public static readonly RestartJob Instance = new();
    }
}
