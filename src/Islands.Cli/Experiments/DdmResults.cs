using Islands.Hosting;
using Islands.Diffusion.IO;
using Islands.Diffusion.Routing;

namespace Islands.Cli.Experiments;

/// <summary>One finished training run: an expert, the monolith, or a router.</summary>
/// <param name="Seconds">Wall-clock of this process's share of the run (Resumed: an earlier interrupted invocation did the rest).</param>
public sealed record TrainingOutcome(int Seed, string Arm, int Expert, string Run, long Steps, int Batch, double Seconds, bool Resumed,
    double Flops, float FinalLoss);

/// <summary>A learned router: its training cost and its held-out accuracy by band of t.</summary>
public sealed record RouterOutcome(int Seed, string Arm, string Run, long Steps, int Batch, double Seconds, double Flops,
    IReadOnlyList<RouterBandReport> Accuracy);

/// <summary>One FID/KID score of one method at one point of training.</summary>
/// <param name="TrainFlops">Training FLOPs spent to reach this point: the arm's experts (or the monolith) plus, for DDM, its whole router.</param>
public sealed record EvaluationOutcome(int Seed, string Arm, string Method, long Step, double TrainFlops, int Samples, int SamplingSteps,
    double Fid, double Kid, double Seconds, double EvaluationsPerImage, double SamplingGflopPerImage, string? Grid);

/// <summary>The interrupted expert: killed (SIGKILL) part way, restarted from its last checkpoint by the same command.</summary>
/// <param name="BaselineSeconds">The same expert's uninterrupted training, in this experiment's process.</param>
/// <param name="LostSeconds">Both invocations together minus the baseline: redone steps, two process starts, reloading.</param>
/// <param name="SameWeightsAsUninterrupted">The resumed run's final EMA weights are bit for bit the uninterrupted run's.</param>
public sealed record FailureOutcome(int Seed, string Run, long Steps, int CheckpointEvery, double BaselineSeconds, bool Killed,
    double KilledAfterSeconds, long ResumedFromStep, double ResumedSeconds, double LostSeconds, bool SameWeightsAsUninterrupted);

/// <summary>Finished stages, one JSON file each under stages/, so that a rerun skips them.</summary>
public sealed class DdmStageStore(string root)
{
    public string Root { get; } = Path.Combine(root, "stages");

    public bool TryGet<T>(string name, out T value)
    {
        var path = PathOf(name);
        if (File.Exists(path))
        {
            value = Json.Read<T>(path);
            return true;
        }
        value = default!;
        return false;
    }

    public T Put<T>(string name, T value)
    {
        Directory.CreateDirectory(Root);
        Json.WriteAtomic(PathOf(name), value);
        return value;
    }

    public IReadOnlyList<T> All<T>(string prefix) =>
        !Directory.Exists(Root) ? [] :
        [.. Directory.GetFiles(Root, prefix + "*.json").Where(f => !AtomicFile.IsTemporary(f)).Order(StringComparer.Ordinal).Select(Json.Read<T>)];

    private string PathOf(string name) => Path.Combine(Root, name + ".json");
}
