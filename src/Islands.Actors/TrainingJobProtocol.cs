namespace Islands.Actors;

// The job's protocol. Everything here may cross nodes (through the singleton proxy) or lives in the journal, so each
// type is an IIslandsMessage and is written by IslandsSerializer.

/// <summary>Ask the island's training job for its state; answered with <see cref="JobStatus"/>.</summary>
public sealed record GetJobStatus : IIslandsMessage
{
    public static readonly GetJobStatus Instance = new();
}

/// <summary>Graceful stop (also the singleton's termination message): commit a checkpoint, then stop.</summary>
public sealed record StopTraining : IIslandsMessage
{
    public static readonly StopTraining Instance = new();
}

/// <summary>Ask the island's training job for its history; answered with <see cref="JobHistory"/>.</summary>
public sealed record GetJobHistory : IIslandsMessage
{
    public static readonly GetJobHistory Instance = new();
}

/// <summary>What the job did: the loss curve of its current incarnation (what came before lives on as the committed checkpoints' losses),
/// the checkpoints it committed (the newest <see cref="MaxCheckpoints"/>) and those it rejected, with why.</summary>
public sealed record JobHistory(string Island, string Job, IReadOnlyList<Diffusion.Metrics.LossPoint> Losses,
    IReadOnlyList<CheckpointCommitted> Committed, IReadOnlyList<CheckpointRejected> Rejected, int Recoveries, int WorkerRestarts,
    int Rollbacks) : IIslandsMessage
{
    /// <summary>Keeps the answer far below remoting's frame size (a run of thousands of checkpoints).</summary>
    public const int MaxCheckpoints = 64;
}

public sealed record TrainingStopped(string Island, long CommittedStep) : IIslandsMessage;

public sealed record CommittedCheckpoint(long Step, string Checkpoint, string ManifestSha256, float Loss, DateTimeOffset At) : IIslandsMessage;

/// <param name="Phase">starting, training, stopping, completed, diverged, or waiting-for-journal.</param>
/// <param name="Recoveries">Incarnations of the job that resumed from the journal (after a crash, a hand-over, a restart).</param>
/// <param name="WorkerRestarts">Restarts of the training worker in the current incarnation.</param>
/// <param name="ResumedFromStep">The committed step the current worker started from (0: from scratch); null before it started.</param>
/// <param name="DivergedReason">Why the job ended in phase diverged (non-finite steps after its rollbacks); null otherwise.</param>
/// <param name="BadSteps">Steps the current worker skipped for a non-finite loss or gradient norm.</param>
/// <param name="Rollbacks">Rollbacks to the last good checkpoint in the job's history (journaled).</param>
public sealed record JobStatus(string Island, string Job, string Phase, long Step, long TotalSteps, float? Loss, double ImagesPerSecond,
    CommittedCheckpoint? LastCheckpoint, int Recoveries, int WorkerRestarts, IReadOnlyList<string> RejectedCheckpoints, string? Node,
    string? LastError, long? ResumedFromStep = null, string? DivergedReason = null, long BadSteps = 0, int Rollbacks = 0) : IIslandsMessage;

public interface IJobEvent : IIslandsMessage;

public sealed record JobStarted(string Job, long TotalSteps, string Node, DateTimeOffset At) : IJobEvent;

public sealed record JobResumed(long FromStep, string? FromCheckpoint, string Node, DateTimeOffset At) : IJobEvent;

public sealed record CheckpointCommitted(long Step, string Checkpoint, string ManifestSha256, float Loss, DateTimeOffset At) : IJobEvent;

public sealed record CheckpointRejected(long Step, string Checkpoint, string Reason, DateTimeOffset At) : IJobEvent;

public sealed record JobCompleted(long Step, DateTimeOffset At) : IJobEvent;

/// <summary>The worker reported non-finite trouble at <paramref name="Step"/> (beginning at FailedAt); it restarts from ToCheckpoint (null: the
/// start).</summary>
public sealed record JobRolledBack(long Step, long FailedAt, string Reason, long ToStep, string? ToCheckpoint, DateTimeOffset At) : IJobEvent;

/// <summary>The journal said completed at <paramref name="CompletedStep"/>, but the store no longer holds a checkpoint of that step that verifies:
/// the job trains again.</summary>
public sealed record JobReopened(long CompletedStep, string Reason, DateTimeOffset At) : IJobEvent;

/// <summary>The job gave up: too many rollbacks without progress. A new incarnation stays diverged instead of retrying.</summary>
public sealed record JobDiverged(long Step, string Reason, DateTimeOffset At) : IJobEvent;
