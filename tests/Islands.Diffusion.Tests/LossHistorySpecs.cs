using Islands.Diffusion.Metrics;

namespace Islands.Diffusion.Tests;

public sealed class LossHistorySpecs
{
    [Fact]
    public void Should_keep_at_most_its_capacity_and_still_span_the_whole_run()
    {
        var history = new LossHistory(capacity: 16);
        for (var step = 1; step <= 1000; step++) history.Add(step, 1f / step);
        var points = history.Points;
        Assert.InRange(points.Count, 8, 16);
        Assert.Equal(1, points[0].Step);
        Assert.True(points[^1].Step > 900, $"last point at step {points[^1].Step}");
        Assert.True(points.Zip(points.Skip(1)).All(p => p.First.Step < p.Second.Step), "steps increase");
        Assert.All(points, p => Assert.Equal(1f / p.Step, p.Loss));
    }

    [Fact]
    public void Should_cut_back_on_a_rollback_and_skip_non_finite_losses()
    {
        var history = new LossHistory();
        foreach (var step in new[] { 10, 20, 30, 40 }) history.Add(step, step);
        history.Add(50, float.NaN);
        history.Add(25, 2.5f);
        Assert.Equal([10L, 20, 25], history.Points.Select(p => p.Step));
        Assert.Equal(2.5f, history.Points[^1].Loss);
    }
}
