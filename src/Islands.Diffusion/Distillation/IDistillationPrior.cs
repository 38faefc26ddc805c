using Islands.Diffusion.Sampling;

namespace Islands.Diffusion.Distillation;

/// <summary>
/// What score distillation asks of a diffusion prior: the routed velocity field at a guidance scale, the images' shape,
/// the classes and the label of a degraded class. The offline ensemble (<see cref="EnsemblePrior"/>) and a serving
/// cluster's score service are such priors, so one distillation runs the same in the CLI and as a served job.
/// </summary>
public interface IDistillationPrior : IDisposable
{
    /// <summary>The velocity field guided at the given scale (1: unguided; class -1 is unconditional).</summary>
    VelocityField Field(double guidance = 1);

    (long C, long H, long W) Shape { get; }

    int ClassCount { get; }

    /// <summary>The experts' label of "degraded, class c", or null when they did not all learn the degraded condition.</summary>
    long? DegradedLabel(long c);
}
