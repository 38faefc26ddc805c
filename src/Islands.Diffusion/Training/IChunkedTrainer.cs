using Islands.Diffusion.Checkpoints;

namespace Islands.Diffusion.Training;

/// <summary>
/// A trainer that a host drives in bounded chunks of steps and checkpoints between chunks: the expert trainer and the
/// router trainer both are one, so an island runs either job through the same loop.
/// </summary>
public interface IChunkedTrainer : IDisposable
{
    long Step { get; }
    long TotalSteps { get; }
    int BatchSize { get; }
    int CheckpointEvery { get; }
    double TrainSeconds { get; }
    IReadOnlyList<float> LossHistory { get; }
    CheckpointStore Checkpoints { get; }

    /// <summary>Counts the steps skipped for a non-finite loss or gradient norm; Diverging asks the host to roll back.</summary>
    NonFiniteGuard Guard { get; }

    /// <summary>Test only: from this step on the loss (and every gradient) is NaN; see <see cref="FaultInjection"/>.</summary>
    long? FaultNanFromStep { get; set; }

    /// <summary>Rollbacks without progress allowed before the job ends as diverged (from its config).</summary>
    int MaxRollbacks { get; }

    /// <summary>
    /// Runs up to <paramref name="maxSteps"/> steps (never past TotalSteps), stopping early once Guard.Diverging; returns
    /// the mean loss of the chunk's good steps (NaN when none was good).
    /// </summary>
    float Train(int maxSteps, CancellationToken cancel = default);

    /// <summary>
    /// Writes a checkpoint of the current step (atomically, with a hash manifest) and prunes old ones. Throws
    /// <see cref="NonFiniteTensorException"/>, committing nothing, when a weight holds NaN or infinity.
    /// </summary>
    CheckpointRef Commit();

    /// <summary>Restores weights, optimizer and counters from a checkpoint after verifying every hash.</summary>
    void Restore(string checkpointDirectory);
}
