using static TorchSharp.torch;

namespace Islands.Diffusion.Sampling;

/// <summary>
/// Euler and Heun steps of dx/dt = v from t = 1 (noise) to t = 0, in stages, so that a caller whose velocities come
/// back asynchronously and row by row (serving) takes exactly the steps of the offline sampler. Step i of n evaluates
/// at (x, t_i), t_i = 1 − i·dt; Heun then evaluates again at the Euler prediction (x − dt·v₁, t_i − dt) and moves
/// along the average, except on the last step, whose corrector would evaluate at t = 0.
/// </summary>
public static class FlowStep
{
    public const string Euler = "euler";
    public const string Heun = "heun";

    public static bool IsKnown(string method) => method is Euler or Heun;

    /// <summary>The time of stage 0 (predictor) or 1 (corrector) of step i of n.</summary>
    public static double Time(int step, int steps, int stage)
    {
        var dt = 1.0 / steps;
        var t = 1.0 - step * dt;
        return stage == 0 ? t : t - dt;
    }

    /// <summary>Whether step i of n has a corrector stage.</summary>
    public static bool HasCorrector(string method, int step, int steps) => method == Heun && step < steps - 1;

    /// <summary>Network evaluations per image for n steps (without guidance's doubling).</summary>
    public static int Evaluations(string method, int steps) => method == Heun ? 2 * steps - 1 : steps;

    /// <summary>The Euler step, also Heun's predictor.</summary>
    public static Tensor Predict(Tensor x, Tensor v, double dt) => x - dt * v;

    /// <summary>Heun's corrected step from the velocities at the start and at the prediction.</summary>
    public static Tensor Correct(Tensor x, Tensor start, Tensor predicted, double dt) => x - dt * 0.5 * (start + predicted);
}
