using System.Diagnostics;
using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using Akka.Pattern;
using Akka.Persistence;
using Islands.Diffusion;
using Islands.Diffusion.Checkpoints;
using static Islands.Actors.TrainingWorker;

namespace Islands.Actors;

/// <summary>
/// The durable record of one island's training job, and the actor that drives it. Its journal holds only references:
/// job started or resumed, checkpoint committed (step, name in the store, SHA-256 of the manifest, loss), checkpoint
/// rejected, job completed. A new incarnation (after a crash, on another node) replays the journal and resumes from the
/// newest committed checkpoint that still verifies, journaling every one it has to skip. Weights never enter the journal.
/// When the worker reports too many non-finite steps, the job journals a rollback and restarts the worker from the newest
/// usable checkpoint; after the job's MaxRollbacks rollbacks without progress it journals <see cref="JobDiverged"/> and
/// stays in phase <c>diverged</c> (also after a restart), with the reason in its status.
/// </summary>
public sealed partial class TrainingJobActor : ReceivePersistentActor
{
    private readonly IslandJobSettings settings;
    private readonly ILoggingAdapter log = Context.GetLogger();
    private readonly string node;
    private JobState state = JobState.Empty;
    private IActorRef? worker;
    private IActorRef? stopRequester;
    private WorkerProgress? progress;
    private readonly Diffusion.Metrics.LossHistory losses = new();
    private string? lastError;
    private int workerStarts;
    private long? resumedFrom;

    public TrainingJobActor(IslandJobSettings settings)
    {
        this.settings = settings;
        node = Cluster.Get(Context.System).SelfAddress.ToString();
        Recover<IJobEvent>(e => state = state.Apply(e));
        Recover<RecoveryCompleted>(_ => OnRecovered());
        Training();
    }

    public override string PersistenceId => settings.PersistenceId;

    public static Props Props(IslandJobSettings settings) => Akka.Actor.Props.Create(() => new TrainingJobActor(settings));

    private void OnRecovered()
    {
        Context.Parent.Tell(JobSupervisor.JobRecovered.Instance);
        if (state.Completed)
        {
            // "Completed" is a claim about the store: the final checkpoint must still be there and verify (a deleted
            // directory, an older backup restored). If it is not, the job reopens and resumes from what does verify.
            RejectUnverifiable();
            var kept = state.NewestUsable();
            if (kept is not null && kept.Step >= state.CompletedStep)
            {
                log.Info("island {0}: job {1} already completed at step {2}", settings.Island, settings.Job.Name, state.CompletedStep);
                return;
            }
            var reason = $"the journal says the job completed at step {state.CompletedStep}, but " +
                         (kept is null ? "no committed checkpoint verifies"
                             : $"the newest committed checkpoint that verifies is step {kept.Step} ({kept.Checkpoint})");
            log.Error("island {0}: {1}; resuming from {2}", settings.Island, reason, kept is null ? "the start" : $"step {kept.Step}");
            Persist(new JobReopened(state.CompletedStep, reason, DateTimeOffset.UtcNow), e => state = state.Apply(e));
        }
        if (state.Diverged)
        {
            log.Error("island {0}: job {1} diverged at step {2} and is not retried: {3}", settings.Island, settings.Job.Name, state.DivergedStep,
                state.DivergedReason);
            return;
        }
        using var activity = IslandTelemetry.Source.StartActivity("job.recovery");
        activity?.SetTag("island", settings.Island);
        activity?.SetTag("job", settings.Job.Name);
        RejectUnverifiable();
        var resume = state.NewestUsable();
        activity?.SetTag("resume.step", resume?.Step ?? 0);
        if (!state.Started)
        {
            Persist(new JobStarted(settings.Job.Name, settings.Job.TotalSteps, node, DateTimeOffset.UtcNow),
                e => { state = state.Apply(e); StartWorker(); });
        }
        else
        {
            IslandTelemetry.Recoveries.Add(1, IslandTelemetry.Tag(settings.Island));
            log.Info("island {0}: job {1} recovered on {2}; resuming from {3}", settings.Island, settings.Job.Name, node,
                resume is null ? "the start (no committed checkpoint)" : $"step {resume.Step} ({resume.Checkpoint})");
            Persist(new JobResumed(resume?.Step ?? 0, resume?.Checkpoint, node, DateTimeOffset.UtcNow),
                e => { state = state.Apply(e); StartWorker(); });
        }
    }

    /// <summary>Journals every committed checkpoint, newest first, that fails verification, until one verifies.</summary>
    private void RejectUnverifiable()
    {
        var store = new CheckpointStore(settings.RunDirectory);
        while (state.NewestUsable() is { } candidate)
        {
            try
            {
                CheckpointStore.VerifyReference(Path.Combine(store.Root, candidate.Checkpoint), candidate.ManifestSha256);
                return;
            }
            catch (CheckpointException e)
            {
                Reject(candidate.Checkpoint, candidate.Step, e.Message);
            }
        }
    }

    private void Reject(string checkpoint, long step, string reason)
    {
        log.Warning("island {0}: committed checkpoint {1} is unusable and will be skipped: {2}", settings.Island, checkpoint, reason);
        IslandTelemetry.RejectedCheckpoints.Add(1, IslandTelemetry.Tag(settings.Island));
        // The state changes at once so the next choice skips it; the event makes the skip part of the job's history.
        var rejected = new CheckpointRejected(step, checkpoint, reason, DateTimeOffset.UtcNow);
        state = state.Apply(rejected);
        Persist(rejected, _ => { });
    }

    private void StartWorker()
    {
        var props = BackoffSupervisor.Props(Backoff.OnFailure(TrainingWorker.Props(Self, settings), "worker",
            settings.MinBackoff, settings.MaxBackoff, 0.2, maxNrOfRetries: -1));
        worker = Context.ActorOf(props, "worker-supervisor");
    }

    private void Training()
    {
        Command<WorkerReady>(ready =>
        {
            if (++workerStarts > 1)
            {
                IslandTelemetry.Restarts.Add(1, IslandTelemetry.Tag(settings.Island));
                log.Warning("island {0}: training worker restarted ({1} restarts)", settings.Island, workerStarts - 1);
                // Recovery verified the choice a moment ago; after a worker failure the disk may have changed since.
                RejectUnverifiable();
            }
            var resume = state.NewestUsable();
            resumedFrom = resume?.Step ?? 0;
            ready.Worker.Tell(new BeginTraining(resume?.Checkpoint, resume?.ManifestSha256));
        });
        Command<TrainingTroubled>(OnTrainingTroubled);
        Command<WorkerProgress>(p =>
        {
            if (state.Diverged) return;
            progress = p;
            losses.Add(p.Step, p.Loss);
            lastError = null;
            IslandTelemetry.RecordChunk(settings.Island, p.Steps, p.Loss, p.StepsPerSecond);
        });
        Command<CheckpointWritten>(OnCheckpointWritten);
        Command<CheckpointUnusable>(u => Reject(u.Checkpoint, state.Committed.FirstOrDefault(c => c.Checkpoint == u.Checkpoint)?.Step ?? 0,
            u.Reason));
        Command<WorkerFailed>(f =>
        {
            lastError = f.Reason;
            log.Error("island {0}: training worker failed: {1} (retrying with backoff)", settings.Island, f.Reason);
        });
        Command<TrainingFinished>(f =>
        {
            if (state.Completed || state.Diverged) return;
            Persist(new JobCompleted(f.Step, DateTimeOffset.UtcNow), e =>
            {
                state = state.Apply(e);
                log.Info("island {0}: job {1} completed at step {2}", settings.Island, settings.Job.Name, e.Step);
                if (worker is not null) Context.Stop(worker);
                worker = null;
            });
        });
        Command<GetJobStatus>(_ => Sender.Tell(Status()));
        Command<GetJobHistory>(_ => Sender.Tell(new JobHistory(settings.Island, settings.Job.Name, losses.Points,
            [.. state.Committed.TakeLast(JobHistory.MaxCheckpoints)], [.. state.Rejected.TakeLast(JobHistory.MaxCheckpoints)], state.Recoveries,
            Math.Max(0, workerStarts - 1), state.TotalRollbacks)));
        Command<StopTraining>(_ =>
        {
            stopRequester = Sender;
            if (worker is null)
            {
                Context.Stop(Self);
                return;
            }
            log.Info("island {0}: graceful stop: committing a checkpoint first", settings.Island);
            worker.Tell(CommitAndStop.Instance);
            Context.SetReceiveTimeout(TimeSpan.FromMinutes(2));
        });
        Command<WorkerStopped>(_ =>
        {
            stopRequester?.Tell(new TrainingStopped(settings.Island, state.LastCommitted?.Step ?? 0));
            Context.Stop(Self);
        });
        Command<ReceiveTimeout>(_ =>
        {
            log.Warning("island {0}: the worker did not confirm its final checkpoint in time; stopping anyway", settings.Island);
            Context.Stop(Self);
        });
    }

    private void OnTrainingTroubled(TrainingTroubled trouble)
    {
        if (state.Completed || state.Diverged) return;
        var worker = Sender;
        var tag = IslandTelemetry.Tag(settings.Island);
        if (state.RollbacksWithoutProgress >= settings.Job.MaxRollbacks)
        {
            var reason = $"{trouble.Reason}; gave up after {state.RollbacksWithoutProgress} rollback(s) to the last good checkpoint";
            Persist(new JobDiverged(trouble.Step, reason, DateTimeOffset.UtcNow), e =>
            {
                state = state.Apply(e);
                IslandTelemetry.Divergences.Add(1, tag);
                log.Error("island {0}: job {1} diverged at step {2}: {3}", settings.Island, settings.Job.Name, e.Step, e.Reason);
                if (this.worker is not null) Context.Stop(this.worker);
                this.worker = null;
            });
            return;
        }
        var resume = state.NewestUsable();
        Persist(new JobRolledBack(trouble.Step, trouble.FailedAt, trouble.Reason, resume?.Step ?? 0, resume?.Checkpoint, DateTimeOffset.UtcNow), e =>
        {
            state = state.Apply(e);
            IslandTelemetry.Rollbacks.Add(1, tag);
            log.Warning("island {0}: {1}; rolling back (rollback {2} of {3}) to {4}", settings.Island, e.Reason, state.RollbacksWithoutProgress,
                settings.Job.MaxRollbacks, resume is null ? "the start" : $"step {resume.Step} ({resume.Checkpoint})");
            resumedFrom = resume?.Step ?? 0;
            progress = null;
            worker.Tell(new BeginTraining(resume?.Checkpoint, resume?.ManifestSha256));
        });
    }

    private void OnCheckpointWritten(CheckpointWritten written)
    {
        var activity = IslandTelemetry.Source.StartActivity("checkpoint.commit");
        activity?.SetTag("island", settings.Island);
        activity?.SetTag("step", written.Checkpoint.Step);
        var name = Path.GetFileName(written.Checkpoint.Directory);
        Persist(new CheckpointCommitted(written.Checkpoint.Step, name, written.Checkpoint.ManifestSha256, written.Loss, DateTimeOffset.UtcNow), e =>
        {
            state = state.Apply(e);
            IslandTelemetry.RecordCommit(settings.Island, e.At);
            try
            {
                PublishedCheckpoint.Publish(settings.RunDirectory, settings.Job.Name, settings.Island, written.Checkpoint);
                // Serving clusters that this island announces to (PublicationAnnouncer) rescan at once instead of at their next interval.
                Context.System.EventStream.Publish(new Serving.ModelPublished(settings.Island, settings.Job.Name, written.Checkpoint.Step));
            }
            catch (Exception ex) when (ex is IslandsException or IOException)
            {
                log.Error("island {0}: checkpoint {1} is committed but could not be published: {2}", settings.Island, name, ex.Message);
            }
            activity?.Dispose();
        });
    }

    private JobStatus Status() => new(settings.Island, settings.Job.Name,
        // "training" only once the worker has chosen its checkpoint, so a training status always says where it resumed from.
        state.Completed ? "completed" : state.Diverged ? "diverged" : stopRequester is not null ? "stopping"
            : worker is null || resumedFrom is null ? "starting" : "training",
        state.Diverged ? state.DivergedStep : progress?.Step ?? state.LastCommitted?.Step ?? 0, settings.Job.TotalSteps,
        // A chunk of only skipped (non-finite) steps has no loss; JSON cannot carry NaN.
        progress?.Loss is { } loss && float.IsFinite(loss) ? loss : null, progress?.ImagesPerSecond ?? 0,
        state.LastCommitted, state.Recoveries, Math.Max(0, workerStarts - 1), state.Rejected.Select(r => $"{r.Checkpoint}: {r.Reason}").ToList(),
        node, state.Diverged ? state.DivergedReason : lastError ?? state.ReopenedReason, resumedFrom, state.DivergedReason, progress?.BadSteps ?? 0,
        state.TotalRollbacks);

    protected override void OnRecoveryFailure(Exception reason, object? message = null)
    {
        Context.Parent.Tell(new JobSupervisor.JournalUnavailable(reason.GetBaseException().Message));
        base.OnRecoveryFailure(reason, message);
    }

    protected override void OnPersistFailure(Exception cause, object @event, long sequenceNr)
    {
        Context.Parent.Tell(new JobSupervisor.JournalUnavailable(cause.GetBaseException().Message));
        base.OnPersistFailure(cause, @event, sequenceNr);
    }
}
