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

/// <param name="Samples">The final states, Count × C·H·W floats in [-1, 1] (unclipped); Pixels are their uint8 images.</param>
/// <param name="Routing">Per image and step, the expert with the largest weight at the step's first evaluation.</param>
/// <param name="NonFiniteImages">Images whose final state holds a NaN or an infinity (their pixels say nothing).</param>
public sealed record CompletedGeneration(string Id, GenerationSpec Spec, float[] Samples, byte[] Pixels, int[] LeftOutExperts, int[][] Routing,
    int RetriedRowSteps, double QueueSeconds, double TotalSeconds, int NonFiniteImages);

/// <summary>What applying (some rows of) a step did. Stalled rows had no selected expert answer; they retry at the next step.</summary>
public sealed record StepOutcome(int Rows, int DegradedRows, int StalledRows, IReadOnlyList<ServedGeneration> Advanced,
    IReadOnlyList<CompletedGeneration> Completed);
