namespace Islands.Diffusion.Metrics;

/// <summary>One point of a training loss curve.</summary>
public readonly record struct LossPoint(long Step, float Loss);

/// <summary>
/// A training loss curve of bounded size that always spans the whole run: once it holds more than its capacity, every
/// other point goes and the spacing between kept points doubles. A step at or before the last one (a rollback, or a
/// worker resuming from an earlier checkpoint) cuts the curve back to that step, so it never runs backwards.
/// </summary>
public sealed class LossHistory(int capacity = 512)
{
    private readonly List<LossPoint> points = [];
    private long spacing = 1;

    public int Capacity { get; } = capacity >= 2 ? capacity : throw new ArgumentOutOfRangeException(nameof(capacity), capacity, "must be at least 2");

    /// <summary>Adds a chunk's mean loss at its last step; a non-finite loss is not a point (it is reported as bad steps).</summary>
    public void Add(long step, float loss)
    {
        if (!float.IsFinite(loss)) return;
        var cut = points.FindIndex(p => p.Step >= step);
        if (cut >= 0) points.RemoveRange(cut, points.Count - cut);
        if (points.Count > 0 && step - points[^1].Step < spacing) return;
        points.Add(new LossPoint(step, loss));
        if (points.Count <= Capacity) return;
        var kept = points.Where((_, i) => i % 2 == 0 || i == points.Count - 1).ToList();
        points.Clear();
        points.AddRange(kept);
        spacing *= 2;
    }

    public IReadOnlyList<LossPoint> Points => [.. points];
}
