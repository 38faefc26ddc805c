using System.Diagnostics;

namespace Islands.Diffusion.Training;

/// <summary>
/// Wall time of each phase of the real training step, accumulated over the steps it watched. libtorch's CPU operations
/// return when their work is done, so a lap at a phase boundary measures that phase alone. Off (null) in every run; bench ops sets it.
/// </summary>
public sealed class StepProfile
{
    private readonly Dictionary<string, double> seconds = [];
    private readonly List<string> order = [];
    private readonly Stopwatch watch = new();

    public int Steps { get; private set; }

    public void BeginStep()
    {
        Steps++;
        watch.Restart();
    }

    /// <summary>Charges the time since the previous lap (or the step's start) to <paramref name="phase"/>.</summary>
    public void Lap(string phase)
    {
        if (!seconds.ContainsKey(phase))
        {
            seconds[phase] = 0;
            order.Add(phase);
        }
        seconds[phase] += watch.Elapsed.TotalSeconds;
        watch.Restart();
    }

    /// <summary>Mean milliseconds per step of each phase, in the order the step runs them.</summary>
    public IReadOnlyList<(string Phase, double Milliseconds)> MeanMilliseconds() =>
        order.Select(p => (p, Steps == 0 ? 0 : seconds[p] * 1e3 / Steps)).ToList();
}
