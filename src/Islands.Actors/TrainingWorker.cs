using Islands.Diffusion.Runtime;
using Akka.Actor;
using Akka.Event;
using Islands.Diffusion;
using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Training;

namespace Islands.Actors;

/// <summary>
/// Runs the training loop of one island's job on its own pinned thread (TorchSharp's dispose scopes are per thread), in
/// bounded chunks of steps with a self-message between chunks, so that a commit-and-stop request waits at most one chunk.
/// It holds no tensor math: it drives an <see cref="IChunkedTrainer"/> and reports to the job actor, which decides what
/// is committed. Its parent is a backoff supervisor; after a restart it asks the job actor where to resume.
/// </summary>
public sealed class TrainingWorker : ReceiveActor
{
    public const string DispatcherId = "islands.training-dispatcher";

    private readonly IActorRef job;
    private readonly IslandJobSettings settings;
    private readonly ILoggingAdapter log = Context.GetLogger();
    private IChunkedTrainer? trainer;
    private long lastCommittedStep;
    private long badStepsReported;
    private long badStepsOfEarlierTrainers;

    public TrainingWorker(IActorRef job, IslandJobSettings settings)
    {
        this.job = job;
        this.settings = settings;
        Receive<BeginTraining>(Begin);
        Receive<RunChunk>(_ => RunOneChunk());
        Receive<CommitAndStop>(_ => CommitAndStopNow());
    }

    public static Props Props(IActorRef job, IslandJobSettings settings) =>
        Akka.Actor.Props.Create(() => new TrainingWorker(job, settings)).WithDispatcher(DispatcherId);

    protected override void PreStart() => job.Tell(new WorkerReady(Self));

    private void Begin(BeginTraining begin)
    {
        // Several islands in one process (the demo) each get a share of the cores instead of all of them each.
        if (settings.TorchThreads > 0) TorchSetup.SetThreadsOfCurrentThread(settings.TorchThreads);
        // A rollback asks again (BeginTraining from the job actor): start from a freshly opened trainer every time.
        if (trainer is not null)
        {
            badStepsOfEarlierTrainers += trainer.Guard.BadSteps;
            trainer.Dispose();
            trainer = null;
        }
        try
        {
            trainer = settings.Job.Open(settings.RunDirectory, message => log.Info("{0}", message));
            if (settings.FaultNanFromStep is { } fault) trainer.FaultNanFromStep = fault;
        }
        catch (IslandsException e)
        {
            job.Tell(new WorkerFailed(e.Message));
            throw;
        }
        if (begin.Checkpoint is { } name)
        {
            var directory = Path.Combine(trainer.Checkpoints.Root, name);
            try
            {
                // Restore verifies every file against the manifest; this checks the manifest is the journaled one.
                CheckpointStore.VerifyManifestHash(directory, begin.ManifestSha256!);
                trainer.Restore(directory);
            }
            catch (CheckpointException e)
            {
                job.Tell(new CheckpointUnusable(name, e.Message));
                throw;
            }
        }
        lastCommittedStep = trainer.Step;
        log.Info("island {0}: training {1} from step {2} of {3}", settings.Island, settings.Job.Name, trainer.Step, trainer.TotalSteps);
        Self.Tell(RunChunk.Instance);
    }

    private void RunOneChunk()
    {
        var t = trainer!;
        if (t.Step >= t.TotalSteps)
        {
            job.Tell(new TrainingFinished(t.Step));
            return;
        }
        var chunk = TrainingLoop.RunChunk(t, settings.Job.Name, settings.ChunkSteps,
            log: message => log.Info("island {0}: {1}", settings.Island, message));
        var badSteps = badStepsOfEarlierTrainers + t.Guard.BadSteps;
        if (badSteps > badStepsReported) IslandTelemetry.SkippedSteps.Add(badSteps - badStepsReported, IslandTelemetry.Tag(settings.Island));
        badStepsReported = badSteps;
        job.Tell(new WorkerProgress(t.Step, chunk.Loss, chunk.Steps, chunk.Steps / chunk.Seconds, chunk.ImagesPerSecond, badSteps));
        if (chunk.Committed is { } committed)
        {
            lastCommittedStep = committed.Step;
            job.Tell(new CheckpointWritten(committed, chunk.Loss));
        }
        var trouble = chunk.Trouble;
        if (trouble is { } bad)
        {
            // The job actor decides (and journals) whether to roll back, answering with BeginTraining, or to end diverged.
            log.Warning("island {0}: {1}; asking the job to roll back", settings.Island, bad.Reason);
            job.Tell(new TrainingTroubled(t.Step, bad.FailedAt, bad.Reason));
            return;
        }
        if (t.Step >= t.TotalSteps) job.Tell(new TrainingFinished(t.Step));
        else Self.Tell(RunChunk.Instance);
    }

    private void CommitNow(float loss)
    {
        var committed = trainer!.Commit();
        lastCommittedStep = committed.Step;
        job.Tell(new CheckpointWritten(committed, loss));
    }

    private void CommitAndStopNow()
    {
        if (trainer is not null && trainer.Guard.ConsecutiveBadSteps > 0)
            log.Warning("island {0}: not committing step {1} on stop: {2} bad step(s) in a row", settings.Island, trainer.Step,
                trainer.Guard.ConsecutiveBadSteps);
        if (trainer is not null && trainer.Step > lastCommittedStep && trainer.Guard.ConsecutiveBadSteps == 0)
        {
            var history = trainer.LossHistory;
            CommitNow(history.Count == 0 ? float.NaN : history[^1]);
        }
        job.Tell(new WorkerStopped(trainer?.Step ?? 0));
        Context.Stop(Self);
    }

    protected override void PostStop()
    {
        trainer?.Dispose();
        trainer = null;
    }

    // The worker's protocol is local to the job actor's node (the worker is its child), so none of it needs a serializer.

    /// <summary>Worker to job: started (or restarted); tell me where to resume.</summary>
    public sealed record WorkerReady(IActorRef Worker) : INoSerializationVerificationNeeded;

    /// <summary>Job to worker: resume from this committed checkpoint (a name in the run's store), or start fresh when null.</summary>
    public sealed record BeginTraining(string? Checkpoint, string? ManifestSha256) : INoSerializationVerificationNeeded;

    /// <summary>Job to worker (graceful stop): commit the steps since the last checkpoint, report, and stop.</summary>
    public sealed record CommitAndStop : INoSerializationVerificationNeeded
    {
        public static readonly CommitAndStop Instance = new();
    }

    /// <param name="BadSteps">Steps skipped for a non-finite loss or gradient norm by this worker so far.</param>
    public sealed record WorkerProgress(long Step, float Loss, int Steps, double StepsPerSecond, double ImagesPerSecond,
        long BadSteps = 0) : INoSerializationVerificationNeeded;

    /// <summary>
    /// Worker to job: too many non-finite steps in a row (from <paramref name="FailedAt"/>), or a checkpoint refused for a
    /// non-finite weight. The worker waits: the job answers with BeginTraining (a rollback) or stops it (diverged).
    /// </summary>
    public sealed record TrainingTroubled(long Step, long FailedAt, string Reason) : INoSerializationVerificationNeeded;

    /// <summary>A checkpoint is on disk (atomically); it counts only once the job actor has journaled it.</summary>
    public sealed record CheckpointWritten(CheckpointRef Checkpoint, float Loss) : INoSerializationVerificationNeeded;

    public sealed record TrainingFinished(long Step) : INoSerializationVerificationNeeded;

    public sealed record WorkerStopped(long Step) : INoSerializationVerificationNeeded;

    public sealed record WorkerFailed(string Reason) : INoSerializationVerificationNeeded;

    public sealed record CheckpointUnusable(string Checkpoint, string Reason) : INoSerializationVerificationNeeded;

    private sealed record RunChunk : INoSerializationVerificationNeeded
    {
        public static readonly RunChunk Instance = new();
    }
}
