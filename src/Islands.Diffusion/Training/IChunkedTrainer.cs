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

    /// <summary>Runs up to <paramref name="maxSteps"/> steps (never past TotalSteps); returns the chunk's mean loss.</summary>
    float Train(int maxSteps, CancellationToken cancel = default);

    /// <summary>Writes a checkpoint of the current step (atomically, with a hash manifest) and prunes old ones.</summary>
    CheckpointRef Commit();

    /// <summary>Restores weights, optimizer and counters from a checkpoint after verifying every hash.</summary>
    void Restore(string checkpointDirectory);
}
