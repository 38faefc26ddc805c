using Islands.Diffusion.Checkpoints;

namespace Islands.Diffusion.Training;

/// <summary>What one chunk of training did: its steps, mean loss, the checkpoint it committed, and any trouble.</summary>
/// <param name="Trouble">Why the run must roll back (a streak of non-finite steps, or a checkpoint refused for a
/// non-finite weight) and the step the trouble began at; null when healthy.</param>
public sealed record ChunkOutcome(long Step, float Loss, int Steps, double Seconds, double ImagesPerSecond, CheckpointRef? Committed,
    (string Reason, long FailedAt)? Trouble)
{
    public bool Finished(IChunkedTrainer trainer) => Trouble is null && trainer.Step >= trainer.TotalSteps;
}

/// <summary>How an in-process run ended; the caller owns (and disposes) the trainer.</summary>
public sealed record TrainingLoopResult<T>(T Trainer, string? ResumedCheckpoint, long ResumedFromStep, CheckpointRef? LastCommitted,
    IReadOnlyList<string> SkippedCheckpoints, int Rollbacks, float LastLoss) where T : IChunkedTrainer;

/// <summary>
/// The one training loop of every job (expert, monolith, router, and what registers later): bounded chunks of steps,
/// a checkpoint at every checkpoint-every boundary and at the end, the non-finite guard's verdict after every chunk. No
/// checkpoint is committed in the middle of a streak of bad steps, so a rollback always lands before the streak. An
/// island's worker runs it a chunk per message (its job actor journals commits and decides rollbacks); the CLI runs it
/// whole with <see cref="Run{T}"/>, rolling back in process.
/// </summary>
public static class TrainingLoop
{
    /// <summary>Trains up to maxChunk steps (never past the next checkpoint boundary), then commits at a boundary or at the end.</summary>
    public static ChunkOutcome RunChunk(IChunkedTrainer trainer, string job, int maxChunk, CancellationToken cancel = default,
        Action<string>? log = null)
    {
        var untilCheckpoint = trainer.CheckpointEvery - (int)(trainer.Step % trainer.CheckpointEvery);
        var secondsBefore = trainer.TrainSeconds;
        var stepBefore = trainer.Step;
        var loss = trainer.Train(Math.Max(1, Math.Min(maxChunk, untilCheckpoint)), cancel);
        var steps = (int)(trainer.Step - stepBefore);
        var seconds = Math.Max(1e-9, trainer.TrainSeconds - secondsBefore);
        CheckpointRef? committed = null;
        var trouble = Rollback.Needed(trainer, job);
        if (trouble is null && (trainer.Step % trainer.CheckpointEvery == 0 || trainer.Step >= trainer.TotalSteps))
        {
            if (trainer.Guard.ConsecutiveBadSteps > 0)
                log?.Invoke($"not committing step {trainer.Step}: {trainer.Guard.ConsecutiveBadSteps} bad step(s) in a row");
            else
            {
                try
                {
                    committed = trainer.Commit();
                }
                catch (NonFiniteTensorException e)
                {
                    trouble = (e.Message, trainer.Step);
                }
            }
        }
        if (trouble is null && trainer.Step >= trainer.TotalSteps && trainer.Guard.ConsecutiveBadSteps > 0)
            trouble = (trainer.Guard.Describe(job) + " at the end of the run", trainer.Guard.StreakStartedAt ?? trainer.Step);
        return new ChunkOutcome(trainer.Step, loss, steps, seconds, steps * trainer.BatchSize / seconds, committed, trouble);
    }

    /// <summary>
    /// Runs a job from its newest verified checkpoint (or the start) to completion or cancellation, rolling back to the
    /// last good checkpoint on trouble (throwing <see cref="TrainingDivergedException"/> when the rollbacks are spent).
    /// Cancellation commits the steps since the last checkpoint, so an interrupted run loses nothing.
    /// </summary>
    /// <param name="open">Opens the job's trainer (freezing its config); called again for a rollback with no checkpoint.</param>
    public static TrainingLoopResult<T> Run<T>(Func<T> open, string job, int maxChunk, Action<TrainingProgress>? progress = null,
        Action<string>? log = null, CancellationToken cancel = default) where T : class, IChunkedTrainer
    {
        var trainer = open();
        try
        {
            var budget = new RollbackBudget(job, trainer.MaxRollbacks);
            var skipped = new List<CheckpointException>();
            var newest = trainer.Checkpoints.NewestValid(skipped);
            foreach (var s in skipped) log?.Invoke($"skipping corrupt checkpoint: {s.Message}");
            if (newest is { } found)
            {
                trainer.Restore(found.Directory);
                log?.Invoke($"resuming from step {trainer.Step} ({found.Directory})");
            }
            var resumedFrom = trainer.Step;
            CheckpointRef? last = null;
            var loss = float.NaN;
            while (trainer.Step < trainer.TotalSteps && !cancel.IsCancellationRequested)
            {
                var chunk = RunChunk(trainer, job, maxChunk, cancel, log);
                loss = chunk.Loss;
                if (chunk.Committed is { } committed)
                {
                    last = committed;
                    budget.Committed(committed.Step);
                }
                progress?.Invoke(new TrainingProgress(trainer.Step, trainer.TotalSteps, loss, chunk.ImagesPerSecond, last));
                if (chunk.Trouble is { } t)
                {
                    trainer = Rollback.ToLastGood(trainer, budget, t.Reason, t.FailedAt, open, log);
                    last = null;
                }
            }
            if (cancel.IsCancellationRequested && trainer.Step > resumedFrom && trainer.Guard.ConsecutiveBadSteps == 0
                && (last is null || last.Step != trainer.Step))
            {
                last = trainer.Commit();
                log?.Invoke($"interrupted: committed a checkpoint at step {trainer.Step}; rerun the same command to resume");
            }
            return new TrainingLoopResult<T>(trainer, newest?.Directory, resumedFrom, last, skipped.Select(s => s.Message).ToList(),
                budget.TotalRollbacks, loss);
        }
        catch
        {
            trainer.Dispose();
            throw;
        }
    }
}
