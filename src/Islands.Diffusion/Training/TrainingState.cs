namespace Islands.Diffusion.Training;

/// <summary>The scalar state saved with every checkpoint. Randomness is a pure function of (Seed, Step), so Step is the RNG state.</summary>
public sealed record TrainingState(long Step, int Seed, long ImagesSeen, double TrainSeconds, IReadOnlyList<float> LossHistory)
{
    public const string FileName = "state.json";
}
