using Islands.Diffusion.Routing;
using Islands.Diffusion.Sampling;
using static TorchSharp.torch;

namespace Islands.Diffusion.Serving;

/// <summary>
/// Serving's batching without the messaging: many requests' images in one routed step at a time (<see cref="RoutedStep"/>,
/// the offline sampler's step). A plan runs the router once for all rows and splits them by expert; applying the
/// experts' answers combines them, renormalised over the experts that answered (an expert that missed its deadline is
/// left out and named), and moves each image by its own request's stepper (<see cref="FlowStep"/>: Euler, or Heun in two
/// evaluations). Noise is drawn as the offline sampler draws it, so a request of N ≤ 256 images with seed S starts from
/// the noise of <c>islands sample --count N --seed S</c> and ends where it ends. Several plans may be out at once: a
/// planned image is in flight until its rows are applied, and a plan can leave out images that need a busy expert, so
/// that one slow expert holds back only the images routed to it.
/// </summary>
public sealed class ContinuousSampler(IRouter router, (long C, long H, long W) shape)
{
    private readonly List<ServedGeneration> active = [];
    private long nextPlan;

    public int ExpertCount => router.ExpertCount;
    public IReadOnlyList<ServedGeneration> Active => active;
    public int PendingRows => active.Sum(g => g.StepsDone.Count(s => s < g.Spec.Steps));
    /// <summary>Unfinished images that no plan has out (what the next plan can take).</summary>
    public int ReadyRows => active.Sum(g => Enumerable.Range(0, g.Spec.Count).Count(g.Ready));
    public (long C, long H, long W) Shape => shape;
    /// <summary>The experts' class count when they all learned the degraded condition (its labels are routed as their classes).</summary>
    public int? DegradedClassCount { get; init; }

    public ServedGeneration Admit(string id, GenerationSpec spec)
    {
        spec.ThrowIfInvalid();
        var generation = new ServedGeneration(id, spec, FlowSampler.Noise(spec.Seed, 0, spec.Count, shape));
        active.Add(generation);
        return generation;
    }

    /// <summary>Admits a score query: its points [Count, C, H, W] are evaluated once, through the same plans as generations' rows.</summary>
    public ServedGeneration AdmitScores(string id, ScoreSpec score, Tensor points)
    {
        score.ThrowIfInvalid();
        var unknown = Array.FindIndex(score.Classes, c => !KnowsClass(c));
        if (unknown >= 0)
            throw new ConfigException("class", $"{score.Classes[unknown]} (row {unknown}) is not -1, a class 0..{router.NullClass - 1}" +
                (DegradedClassCount is { } d ? $" or a degraded class {d + 1}..{d + router.NullClass}" : ""));
        if (!points.shape.SequenceEqual([score.Count, shape.C, shape.H, shape.W]))
            throw new ConfigException("x", $"[{string.Join(", ", points.shape)}] points for {score.Count} rows of {shape}");
        Tensor copy;
        using (NewDisposeScope()) copy = points.to_type(ScalarType.Float32).contiguous().clone().DetachFromDisposeScope();
        var query = new ServedGeneration(id, score, copy);
        active.Add(query);
        return query;
    }

    private bool KnowsClass(long c) => c == -1 || c >= 0 && c < router.NullClass
        || DegradedClassCount is { } d && c > d && c - (d + 1) < router.NullClass;

    /// <summary>The wire form: the points as raw float32 bytes, Count × C·H·W.</summary>
    public ServedGeneration AdmitScores(string id, ScoreSpec score, ReadOnlySpan<byte> points)
    {
        score.ThrowIfInvalid();
        var floats = (long)score.Count * shape.C * shape.H * shape.W;
        if (points.Length != floats * sizeof(float))
            throw new ConfigException("x", $"{points.Length} bytes are not {score.Count} float32 images of {shape.C}×{shape.H}×{shape.W}");
        using var x = GuidedVelocity.FromBytes(points, [score.Count, shape.C, shape.H, shape.W]);
        return AdmitScores(id, score, x);
    }

    public void Remove(string id)
    {
        foreach (var g in active.Where(g => g.Id == id)) g.Dispose();
        active.RemoveAll(g => g.Id == id);
    }

    /// <summary>
    /// Plans the next evaluation for up to maxRows unfinished images that no plan has out (oldest request first), or null
    /// when there is nothing to do. Images routed to an expert in busy wait for a later plan (busy may be null).
    /// </summary>
    public StepPlan? Plan(int maxRows, IReadOnlyList<bool> available, IReadOnlySet<int>? busy = null)
    {
        if (available.Count != ExpertCount) throw new ArgumentException($"{available.Count} availability flags for {ExpertCount} experts");
        var availableCount = available.Count(a => a);
        if (availableCount == 0) return null;
        var rows = Candidates(maxRows);
        if (rows.Count == 0) return null;

        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var points = cat(rows.GroupBy(r => (r.Generation, Corrector: r.Generation.Stage[r.Image] == 1))
            .Select(group => group.Key.Generation.Points(group.Select(r => (long)r.Image).ToArray(), group.Key.Corrector)).ToList(), 0);
        var weights = Route(rows, points, available, availableCount);
        var k = ExpertCount;
        if (busy is { Count: > 0 })
        {
            var kept = Enumerable.Range(0, rows.Count)
                .Where(r => !Enumerable.Range(0, k).Any(e => weights[r * k + e] > 0 && busy.Contains(e))).ToList();
            if (kept.Count == 0) return null;
            if (kept.Count < rows.Count)
            {
                weights = kept.SelectMany(r => weights.AsSpan(r * k, k).ToArray()).ToArray();
                points = points.index_select(0, tensor(kept.Select(r => (long)r).ToArray()));
                rows = kept.Select(r => rows[r]).ToList();
            }
        }
        foreach (var (g, i) in rows) g.InFlight[i] = true;
        var work = RoutedStep.Split(weights, rows.Count, k).Select(part => new ExpertWork(part.Expert, part.Rows.Select(r => (int)r).ToArray(),
            points.index_select(0, tensor(part.Rows)).DetachFromDisposeScope(),
            part.Rows.Select(r => rows[(int)r].Generation.Time(rows[(int)r].Image)).ToArray(),
            part.Rows.Select(r => rows[(int)r].Generation.Class(rows[(int)r].Image)).ToArray(),
            part.Rows.Select(r => rows[(int)r].Generation.Cfg(rows[(int)r].Image)).ToArray())).ToList();
        return new StepPlan(++nextPlan, rows, weights, k, work);
    }

    /// <summary>Unfinished images no plan has out, oldest request first; within a request, evaluations at x_t before correctors.</summary>
    private List<(ServedGeneration Generation, int Image)> Candidates(int maxRows)
    {
        var rows = new List<(ServedGeneration Generation, int Image)>();
        foreach (var g in active)
        {
            var ready = Enumerable.Range(0, g.Spec.Count).Where(g.Ready).Take(maxRows - rows.Count);
            rows.AddRange(ready.OrderBy(i => g.Stage[i]).Select(i => (g, i)));
            if (rows.Count >= maxRows) break;
        }
        return rows;
    }

    /// <summary>The strategies' weights [rows × K] from one router pass over all rows (rows of a strategy share a call).</summary>
    private double[] Route(List<(ServedGeneration Generation, int Image)> rows, Tensor points, IReadOnlyList<bool> available, int availableCount)
    {
        var n = rows.Count;
        var k = ExpertCount;
        var weights = new double[n * k];
        var t = tensor(rows.Select(r => r.Generation.Time(r.Image)).ToArray());
        var classes = RoutedStep.RouterClasses(tensor(rows.Select(r => r.Generation.Class(r.Image)).ToArray()), DegradedClassCount, router);
        var mask = RoutedStep.Mask(available);
        var p = RoutedStep.Posterior(router, points, t, classes, mask);
        foreach (var group in Enumerable.Range(0, n).GroupBy(r => rows[r].Generation.Spec.Strategy))
        {
            var members = group.ToArray();
            var w = RoutedStep.Weights(p.index_select(0, tensor(members.Select(m => (long)m).ToArray())), mask, group.Key, availableCount)
                .contiguous().data<double>().ToArray();
            for (var m = 0; m < members.Length; m++) Array.Copy(w, m * k, weights, members[m] * k, k);
        }
        return weights;
    }

    /// <summary>
    /// Combines the experts' answers ([rows, C, H, W] velocities in each ExpertWork's row order; a missing key is an
    /// expert that did not answer) for the given rows of the plan (all when rows is null) and takes those rows off the plan.
    /// </summary>
    public StepOutcome Apply(StepPlan plan, IReadOnlyDictionary<int, Tensor> answers, IReadOnlyCollection<int>? rows = null)
    {
        var k = plan.ExpertCount;
        var n = plan.Rows.Count;
        var include = new bool[n];
        foreach (var r in rows ?? Enumerable.Range(0, n).ToArray()) include[r] = true;
        var answered = new List<ExpertAnswer>();
        var degraded = new bool[n];
        foreach (var work in plan.Work)
        {
            if (answers.TryGetValue(work.Expert, out var v))
            {
                if (v.shape[0] != work.PlanRows.Length || v.numel() != work.X.numel())
                    throw new ArgumentException($"expert {work.Expert} answered [{string.Join(", ", v.shape)}] for {work.PlanRows.Length} rows");
                answered.Add(new ExpertAnswer(work.Expert, work.PlanRows.Select(r => (long)r).ToArray(), v.view(work.X.shape)));
                continue;
            }
            foreach (var r in work.PlanRows.Where(r => include[r]))
            {
                degraded[r] = true;
                plan.Rows[r].Generation.LeftOut.Add(work.Expert);
            }
        }

        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var (velocity, _) = RoutedStep.Combine(tensor(plan.Weights).view(n, k), answered, [n, shape.C, shape.H, shape.W], ScalarType.Float32);
        var routedTo = new int[n];
        var covered = new bool[n];
        for (var r = 0; r < n; r++)
        {
            var best = -1.0;
            foreach (var a in answered)
            {
                var w = plan.Weights[r * k + a.Expert];
                if (w <= 0) continue;
                covered[r] = true;
                if (w > best) (best, routedTo[r]) = (w, a.Expert);
            }
        }

        var stalled = 0;
        var applied = 0;
        var advanced = new List<ServedGeneration>();
        foreach (var group in Enumerable.Range(0, n).Where(r => include[r]).GroupBy(r => plan.Rows[r].Generation))
        {
            var g = group.Key;
            if (g.Removed) continue;
            var moving = new List<int>();
            foreach (var r in group)
            {
                applied++;
                var i = plan.Rows[r].Image;
                g.InFlight[i] = false;
                g.QueueSeconds ??= g.Clock.Elapsed.TotalSeconds;
                if (covered[r]) moving.Add(r);
                else
                {
                    stalled++;
                    g.RetriedRowSteps++;
                }
            }
            if (moving.Count == 0) continue;
            g.Advance(moving.Select(r => (long)plan.Rows[r].Image).ToArray(), velocity.index_select(0, tensor(moving.Select(r => (long)r).ToArray())),
                moving.Select(r => routedTo[r]).ToArray());
            advanced.Add(g);
        }

        var completed = new List<CompletedGeneration>();
        foreach (var g in active.Where(g => g.Done).ToList())
        {
            active.Remove(g);
            completed.Add(g.Complete());
            g.Dispose();
        }
        return new StepOutcome(applied, degraded.Count(d => d), stalled, advanced, completed);
    }
}
