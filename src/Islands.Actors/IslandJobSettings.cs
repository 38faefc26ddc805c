using Islands.Diffusion.Training;

namespace Islands.Actors;

/// <summary>What one island trains and where: the job, its run directory in the checkpoint store, and the loop's pacing.</summary>
/// <param name="ChunkSteps">Steps per chunk of the training loop; between chunks the worker reads its mailbox.</param>
/// <param name="Journal">The journal as an operator should see it in errors (provider and location, never a password).</param>
/// <param name="TorchThreads">libtorch threads of the worker's own thread (OpenMP's count is per thread); 0 leaves the default.</param>
/// <param name="FaultNanFromStep">Test only (islands:test:faultNanFromStep): the trainer's loss is NaN from this step on.</param>
public sealed record IslandJobSettings(
    string Island, TrainingJob Job, string RunDirectory, int ChunkSteps, TimeSpan MinBackoff, TimeSpan MaxBackoff, string Journal = "journal",
    int TorchThreads = 0, long? FaultNanFromStep = null)
{
    public string PersistenceId => $"island-{Island}-training-job";
}
