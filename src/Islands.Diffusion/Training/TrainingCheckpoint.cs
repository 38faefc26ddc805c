using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.IO;

namespace Islands.Diffusion.Training;

/// <summary>
/// The part of saving and restoring a training checkpoint that every trainer shares: the state file, the recent loss
/// in the manifest, pruning, hash verification before anything is read, the seed check, and turning a weights file
/// that does not fit the model into a <see cref="CheckpointException"/>.
/// </summary>
public static class TrainingCheckpoint
{
    /// <param name="weights">Every module whose tensors the checkpoint holds: all must be finite, or nothing is committed.</param>
    public static CheckpointRef Save(CheckpointStore store, TrainingState state, int keep,
        IReadOnlyList<(string Prefix, TorchSharp.torch.nn.Module Module)> weights,
        Action<string> writeModelFiles)
    {
        NonFiniteGuard.ThrowIfNonFinite($"checkpoint of step {state.Step} in {store.Root}", weights);
        var recent = RecentLoss(state.LossHistory);
        var committed = store.Commit(state.Step, recent, dir =>
        {
            writeModelFiles(dir);
            File.WriteAllText(Path.Combine(dir, TrainingState.FileName), Json.Serialize(state, indented: false));
        });
        store.Prune(keep);
        return committed;
    }

    /// <summary>Mean of the last 50 finite losses (skipped steps record NaN), or null.</summary>
    public static float? RecentLoss(IReadOnlyList<float> history)
    {
        var finite = history.TakeLast(50).Where(float.IsFinite).ToList();
        return finite.Count == 0 ? null : finite.Average();
    }

    public static TrainingState Load(string directory, int expectedSeed, string what, Action<string> loadModelFiles)
    {
        CheckpointStore.Verify(directory);
        var state = Json.Read<TrainingState>(Path.Combine(directory, TrainingState.FileName));
        if (state.Seed != expectedSeed)
            throw new CheckpointException(directory, $"was written with seed {state.Seed}, but this run uses seed {expectedSeed}");
        try
        {
            loadModelFiles(directory);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or IOException or KeyNotFoundException)
        {
            throw new CheckpointException(directory, $"incompatible with this {what} configuration ({e.Message})", e);
        }
        return state;
    }
}
