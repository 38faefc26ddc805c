namespace Islands.Diffusion.Sampling;

/// <summary>How to integrate the flow ODE from noise (t=1) to data (t=0).</summary>
/// <param name="Cfg">Classifier-free guidance scale w in v = v_uncond + w·(v_cond - v_uncond); 1 is plain conditional (one
/// network evaluation), 0 is unconditional. Ignored for unconditional samples.</param>
public sealed record SamplerOptions(int Steps = 20, string Method = "euler", double Cfg = 1.0, long Seed = 0, int BatchSize = 256)
{
    public IEnumerable<string> Validate()
    {
        if (Steps is < 1 or > 1000) yield return $"steps: {Steps} must lie in 1..1000";
        if (!FlowStep.IsKnown(Method)) yield return $"sampler: '{Method}' must be euler or heun";
        if (Cfg is < 0 or > 20 || double.IsNaN(Cfg)) yield return $"cfg: {Cfg} must lie in 0..20";
        if (BatchSize < 1) yield return $"batchSize: {BatchSize} must be at least 1";
    }

    public void ThrowIfInvalid() => ConfigException.ThrowFirst(Validate());

    public bool Guided(bool conditional) => conditional && Cfg != 1.0;

    /// <summary>Network evaluations per image: Euler one per step, Heun two per step but one on the last; guidance doubles it.</summary>
    public int EvaluationsPerImage(bool conditional) => FlowStep.Evaluations(Method, Steps) * (Guided(conditional) ? 2 : 1);
}
