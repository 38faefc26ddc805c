namespace Islands.Diffusion.Training;

/// <summary>Linear warm-up to the peak rate, then cosine decay to MinFraction of it at the last step.</summary>
public static class LearningRateSchedule
{
    public static double At(long step, double peak, int warmup, long totalSteps, double minFraction)
    {
        if (warmup > 0 && step < warmup) return peak * (step + 1) / warmup;
        var span = Math.Max(1, totalSteps - warmup);
        var progress = Math.Clamp((step - warmup) / (double)span, 0, 1);
        return peak * (minFraction + (1 - minFraction) * 0.5 * (1 + Math.Cos(Math.PI * progress)));
    }
}
