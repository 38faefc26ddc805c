using System.Collections.Immutable;

namespace Islands.Actors;

public sealed partial class TrainingJobActor
{
    /// <summary>The state rebuilt from the journal; <c>Committed</c> holds the commits not rejected since. Immutable, so applying an event is the
    /// only way it changes.</summary>
    /// <param name="RollbacksWithoutProgress">Rollbacks since the last checkpoint committed past the step where trouble began.</param>
    public sealed record JobState(bool Started, ImmutableList<CheckpointCommitted> Committed, ImmutableList<CheckpointRejected> Rejected,
        int Recoveries, bool Completed, long CompletedStep, int RollbacksWithoutProgress = 0, long? FailedAt = null, int TotalRollbacks = 0,
        bool Diverged = false, long DivergedStep = 0, string? DivergedReason = null, string? ReopenedReason = null)
    {
        public static readonly JobState Empty = new(false, [], [], 0, false, 0);

        public CommittedCheckpoint? LastCommitted => Committed.Count == 0 ? null : ToReference(Committed[^1]);

        public CommittedCheckpoint? NewestUsable() => Committed.OrderByDescending(c => c.Step).Select(ToReference).FirstOrDefault();

        private static CommittedCheckpoint ToReference(CheckpointCommitted c) => new(c.Step, c.Checkpoint, c.ManifestSha256, c.Loss, c.At);

        public JobState Apply(IJobEvent e) => e switch
        {
            JobStarted => this with { Started = true },
            JobResumed => this with { Recoveries = Recoveries + 1 },
            CheckpointCommitted c => FailedAt is { } f && c.Step > f
                ? this with { Committed = Committed.Add(c), RollbacksWithoutProgress = 0, FailedAt = null }
                : this with { Committed = Committed.Add(c) },
            JobRolledBack b => this with { RollbacksWithoutProgress = RollbacksWithoutProgress + 1, TotalRollbacks = TotalRollbacks + 1,
                FailedAt = FailedAt is { } f ? Math.Min(f, b.FailedAt) : b.FailedAt },
            JobDiverged d => this with { Diverged = true, DivergedStep = d.Step, DivergedReason = d.Reason },
            // A rejection removes the commits it follows, not later ones: a name can be committed again once its directory is gone.
            CheckpointRejected r => this with
            {
                Committed = Committed.RemoveAll(c => c.Checkpoint == r.Checkpoint),
                Rejected = Rejected.Any(x => x.Checkpoint == r.Checkpoint) ? Rejected : Rejected.Add(r),
            },
            JobCompleted d => this with { Completed = true, CompletedStep = d.Step, ReopenedReason = null },
            JobReopened r => this with { Completed = false, CompletedStep = 0, ReopenedReason = r.Reason },
            _ => throw new ArgumentOutOfRangeException(nameof(e), e.GetType().Name, "unknown job event"),
        };
    }
}
