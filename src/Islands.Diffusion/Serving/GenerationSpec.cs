using Islands.Diffusion.Routing;
using Islands.Diffusion.Sampling;

namespace Islands.Diffusion.Serving;

/// <summary>What a client asked for. Classes: one per image, -1 for unconditional; null for all unconditional.</summary>
/// <param name="Method">The ODE stepper, euler or heun (<see cref="FlowStep"/>), as in offline sampling.</param>
public sealed record GenerationSpec(int Count, long[]? Classes, int Steps, double Cfg, RoutingStrategy Strategy, long Seed,
    string Method = FlowStep.Euler)
{
    public void ThrowIfInvalid()
    {
        if (Count < 1) throw new ConfigException("count", $"{Count} must be at least 1");
        if (Classes is not null && Classes.Length != Count) throw new ConfigException("class", $"{Classes.Length} classes for {Count} images");
        if (Steps < 1) throw new ConfigException("steps", $"{Steps} must be at least 1");
        if (!FlowStep.IsKnown(Method)) throw new ConfigException("sampler", $"'{Method}' must be {FlowStep.Euler} or {FlowStep.Heun}");
    }
}

/// <summary>
/// A score query: the routed ensemble's velocity at Count given points, each with its own time, class (-1 unconditional)
/// and guidance scale. It rides the same plans as generations' rows, so a score costs one routed step.
/// </summary>
public sealed record ScoreSpec(int Count, float[] T, long[] Classes, float[] Cfg, RoutingStrategy Strategy)
{
    public const int MaxRows = 256;

    public void ThrowIfInvalid()
    {
        if (Count is < 1 or > MaxRows) throw new ConfigException("x", $"{Count} rows must lie in 1..{MaxRows}");
        if (T.Length != Count) throw new ConfigException("t", $"{T.Length} times for {Count} rows");
        if (Classes.Length != Count) throw new ConfigException("class", $"{Classes.Length} classes for {Count} rows");
        if (Cfg.Length != Count) throw new ConfigException("cfg", $"{Cfg.Length} guidance scales for {Count} rows");
        var outside = Array.FindIndex(T, t => !(t >= 0 && t <= 1));
        if (outside >= 0) throw new ConfigException("t", $"{T[outside]} (row {outside}) must lie in [0, 1]");
        if (Cfg.Any(c => !float.IsFinite(c) || c is < 0 or > 200)) throw new ConfigException("cfg", "guidance scales must lie in 0..200");
        if (Classes.Any(c => c < -1)) throw new ConfigException("class", "classes must be -1 (unconditional) or a class index");
        if (Strategy.Kind is "sample" or "oracle") throw new ConfigException("strategy", $"{Strategy} is for offline evaluation");
    }
}

/// <param name="Samples">The final states, Count × C·H·W floats in [-1, 1] (unclipped); Pixels are their uint8 images.</param>
/// <param name="Routing">Per image and step, the expert with the largest weight at the step's first evaluation.</param>
/// <param name="NonFiniteImages">Images whose final state holds a NaN or an infinity (their pixels say nothing).</param>
public sealed record CompletedGeneration(string Id, GenerationSpec Spec, float[] Samples, byte[] Pixels, int[] LeftOutExperts, int[][] Routing,
    int RetriedRowSteps, double QueueSeconds, double TotalSeconds, int NonFiniteImages);

/// <summary>What applying (some rows of) a step did. Stalled rows had no selected expert answer; they retry at the next step.</summary>
public sealed record StepOutcome(int Rows, int DegradedRows, int StalledRows, IReadOnlyList<ServedGeneration> Advanced,
    IReadOnlyList<CompletedGeneration> Completed);
