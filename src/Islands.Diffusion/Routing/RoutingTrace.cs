namespace Islands.Diffusion.Routing;

/// <summary>Every routing decision of a sampling run: for each step, each sample's chosen experts and their weights.</summary>
public sealed class RoutingTrace
{
    private readonly object gate = new();
    private readonly List<RoutingTraceStep> steps = [];

    public IReadOnlyList<RoutingTraceStep> Steps => steps;

    public void Record(double t, int rowOffset, double[][] weights)
    {
        var rows = weights.Select((w, i) => new RoutingDecision(rowOffset + i,
            w.Select((value, k) => (value, k)).Where(x => x.value > 0).Select(x => x.k).ToArray(),
            w.Where(value => value > 0).Select(v => Math.Round(v, 6)).ToArray())).ToArray();
        lock (gate) steps.Add(new RoutingTraceStep(Math.Round(t, 6), rows));
    }
}

public sealed record RoutingTraceStep(double T, IReadOnlyList<RoutingDecision> Samples);

public sealed record RoutingDecision(int Sample, int[] Experts, double[] Weights);
