using System.Diagnostics;
using Islands.Diffusion.Routing;
using static TorchSharp.torch;

namespace Islands.Diffusion.Serving;

/// <summary>What a client asked for. Classes: one per image, -1 for unconditional; null for all unconditional.</summary>
public sealed record GenerationSpec(int Count, long[]? Classes, int Steps, double Cfg, RoutingStrategy Strategy, long Seed);

/// <summary>One request's images as they integrate; each image keeps its own step so a big request can span batches.</summary>
public sealed class ServedGeneration
{
    internal ServedGeneration(string id, GenerationSpec spec, float[] noise, long imageFloats)
    {
        Id = id;
        Spec = spec;
        X = noise;
        ImageFloats = imageFloats;
        StepsDone = new int[spec.Count];
        InFlight = new bool[spec.Count];
        Routing = Enumerable.Range(0, spec.Count).Select(_ => new List<int>(spec.Steps)).ToArray();
    }

    public string Id { get; }
    public GenerationSpec Spec { get; }
    internal float[] X { get; }
    internal long ImageFloats { get; }
    internal int[] StepsDone { get; }
    /// <summary>Images whose current step is with the experts (planned, not yet applied): no other plan may take them.</summary>
    internal bool[] InFlight { get; }
    internal List<int>[] Routing { get; }
    internal SortedSet<int> LeftOut { get; } = [];
    public Stopwatch Clock { get; } = Stopwatch.StartNew();
    public double? QueueSeconds { get; internal set; }
    public int RetriedRowSteps { get; internal set; }
    /// <summary>Steps every image has completed (the request's progress).</summary>
    public int Step => StepsDone.Min();
    public bool Done => Step >= Spec.Steps;
    public IReadOnlyCollection<int> LeftOutExperts => LeftOut;
}

/// <summary>The rows one expert must evaluate in a step (indices into the plan's rows) and their inputs.</summary>
public sealed record ExpertWork(int Expert, int[] PlanRows, float[] X, float[] T, long[] Classes, float[] Cfg);

/// <summary>One step of the continuous batch: which image of which request each row is, its weights, and the experts' work.</summary>
public sealed record StepPlan(long Id, IReadOnlyList<(ServedGeneration Generation, int Image)> Rows, double[] Weights, int ExpertCount,
    IReadOnlyList<ExpertWork> Work)
{
    /// <summary>The experts row r needs (those with a positive weight).</summary>
    public IEnumerable<int> ExpertsOf(int row) => Enumerable.Range(0, ExpertCount).Where(e => Weights[row * ExpertCount + e] > 0);
}

/// <param name="Samples">The final states, Count × C·H·W floats in [-1, 1] (unclipped); Pixels are their uint8 images.</param>
public sealed record CompletedGeneration(string Id, GenerationSpec Spec, float[] Samples, byte[] Pixels, int[] LeftOutExperts, int[][] Routing,
    int RetriedRowSteps, double QueueSeconds, double TotalSeconds);

/// <summary>What applying (some rows of) a step did. Stalled rows had no selected expert answer; they retry at the next step.</summary>
public sealed record StepOutcome(int Rows, int DegradedRows, int StalledRows, IReadOnlyList<ServedGeneration> Advanced,
    IReadOnlyList<CompletedGeneration> Completed);

/// <summary>
/// Serving's sampling loop without the messaging: continuous batching of many requests' images into one routed Euler
/// step at a time. A plan runs the router once for all rows and splits them by expert; applying the experts' answers
/// combines them with the routing weights, renormalised over the experts that answered (an expert that missed its
/// deadline is left out and named), and advances each image by its own dt. Noise is drawn as the offline sampler draws
/// it, so a request of N ≤ 256 images with seed S starts from the same noise as <c>islands sample --count N --seed S</c>.
/// Several plans may be out at once: a planned image is in flight until its rows are applied, and a plan can leave out
/// images that need a busy expert, so that one slow expert holds back only the images routed to it.
/// </summary>
public sealed class ContinuousSampler(IRouter router, long routerNullClass, (long C, long H, long W) shape)
{
    private readonly List<ServedGeneration> active = [];
    private long nextPlan;
    private readonly long imageFloats = shape.C * shape.H * shape.W;

    public int ExpertCount => router.ExpertCount;
    public IReadOnlyList<ServedGeneration> Active => active;
    public int PendingRows => active.Sum(g => g.StepsDone.Count(s => s < g.Spec.Steps));
    /// <summary>Unfinished images that no plan has out (what the next plan can take).</summary>
    public int ReadyRows => active.Sum(g => Enumerable.Range(0, g.Spec.Count).Count(i => g.StepsDone[i] < g.Spec.Steps && !g.InFlight[i]));
    public (long C, long H, long W) Shape => shape;

    public ServedGeneration Admit(string id, GenerationSpec spec)
    {
        if (spec.Count < 1) throw new ConfigException("count", $"{spec.Count} must be at least 1");
        if (spec.Classes is not null && spec.Classes.Length != spec.Count) throw new ConfigException("class", $"{spec.Classes.Length} classes for {spec.Count} images");
        using var scope = NewDisposeScope();
        using var generator = new Generator((ulong)(spec.Seed * 7919));
        var noise = randn([spec.Count, shape.C, shape.H, shape.W], generator: generator).contiguous().data<float>().ToArray();
        var generation = new ServedGeneration(id, spec, noise, imageFloats);
        active.Add(generation);
        return generation;
    }

    public void Remove(string id) => active.RemoveAll(g => g.Id == id);

    /// <summary>
    /// Plans the next step for up to maxRows unfinished images that no plan has out (oldest request first), or null when
    /// there is nothing to do. Images routed to an expert in busy wait for a later plan (busy may be null).
    /// </summary>
    public StepPlan? Plan(int maxRows, IReadOnlyList<bool> available, IReadOnlySet<int>? busy = null)
    {
        if (available.Count != ExpertCount) throw new ArgumentException($"{available.Count} availability flags for {ExpertCount} experts");
        var availableCount = available.Count(a => a);
        if (availableCount == 0) return null;
        var candidates = new List<(ServedGeneration Generation, int Image)>();
        foreach (var g in active)
            for (var i = 0; i < g.Spec.Count && candidates.Count < maxRows; i++)
                if (g.StepsDone[i] < g.Spec.Steps && !g.InFlight[i]) candidates.Add((g, i));
        if (candidates.Count == 0) return null;
        var (rows, weights) = Route(candidates, available, availableCount, busy);
        if (rows.Count == 0) return null;
        foreach (var (g, i) in rows) g.InFlight[i] = true;
        var n = rows.Count;
        var k = ExpertCount;
        var work = new List<ExpertWork>();
        for (var e = 0; e < k; e++)
        {
            var selected = Enumerable.Range(0, n).Where(r => weights[r * k + e] > 0).ToArray();
            if (selected.Length == 0) continue;
            var ex = new float[selected.Length * imageFloats];
            for (var s = 0; s < selected.Length; s++)
            {
                var (g, i) = rows[selected[s]];
                Array.Copy(g.X, i * imageFloats, ex, s * imageFloats, imageFloats);
            }
            work.Add(new ExpertWork(e, selected, ex, selected.Select(r => Time(rows[r])).ToArray(), selected.Select(r => Class(rows[r])).ToArray(),
                selected.Select(r => (float)rows[r].Generation.Spec.Cfg).ToArray()));
        }
        return new StepPlan(++nextPlan, rows, weights, k, work);
    }

    private static float Time((ServedGeneration Generation, int Image) row) =>
        (float)(1.0 - row.Generation.StepsDone[row.Image] / (double)row.Generation.Spec.Steps);

    private static long Class((ServedGeneration Generation, int Image) row) => row.Generation.Spec.Classes?[row.Image] ?? -1;

    /// <summary>The router's weights for the candidates, keeping only the rows that need no busy expert.</summary>
    private (List<(ServedGeneration Generation, int Image)> Rows, double[] Weights) Route(List<(ServedGeneration Generation, int Image)> rows,
        IReadOnlyList<bool> available, int availableCount, IReadOnlySet<int>? busy)
    {
        var n = rows.Count;
        var x = new float[n * imageFloats];
        var t = new float[n];
        var classes = new long[n];
        for (var r = 0; r < n; r++)
        {
            var (g, i) = rows[r];
            Array.Copy(g.X, i * imageFloats, x, r * imageFloats, imageFloats);
            t[r] = Time(rows[r]);
            classes[r] = Class(rows[r]);
        }

        var k = ExpertCount;
        var weights = new double[n * k];
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            var xs = tensor(x).view(n, shape.C, shape.H, shape.W);
            var rc = tensor(classes.Select(c => c < 0 ? routerNullClass : c).ToArray());
            var mask = tensor(available.Select(a => a ? 1.0 : 0.0).ToArray(), dtype: ScalarType.Float64).unsqueeze(0);
            var p = router.Posterior(xs, tensor(t), rc).to_type(ScalarType.Float64) * mask;
            foreach (var group in Enumerable.Range(0, n).GroupBy(r => rows[r].Generation.Spec.Strategy.ToString()))
            {
                var members = group.ToArray();
                var index = tensor(members.Select(m => (long)m).ToArray());
                var w = RoutingWeights.Apply(p.index_select(0, index), mask, rows[members[0]].Generation.Spec.Strategy, availableCount)
                    .contiguous().data<double>().ToArray();
                for (var m = 0; m < members.Length; m++) Array.Copy(w, m * k, weights, members[m] * k, k);
            }
        }
        if (busy is null || busy.Count == 0) return (rows, weights);

        var kept = Enumerable.Range(0, n).Where(r => !Enumerable.Range(0, k).Any(e => weights[r * k + e] > 0 && busy.Contains(e))).ToList();
        var keptWeights = new double[kept.Count * k];
        for (var j = 0; j < kept.Count; j++) Array.Copy(weights, kept[j] * k, keptWeights, j * k, k);
        return (kept.Select(r => rows[r]).ToList(), keptWeights);
    }

    /// <summary>
    /// Combines the experts' answers for the given rows of the plan (all when rows is null; velocities in each
    /// ExpertWork's row order; a missing key is an expert that did not answer) and takes those rows off the plan.
    /// </summary>
    public StepOutcome Apply(StepPlan plan, IReadOnlyDictionary<int, float[]> answers, IReadOnlyCollection<int>? rows = null)
    {
        var k = plan.ExpertCount;
        var n = plan.Rows.Count;
        var include = new bool[n];
        foreach (var r in rows ?? Enumerable.Range(0, n).ToArray()) include[r] = true;
        // The combined velocity only of the rows applied now (a plan is applied in parts as its experts answer).
        var slot = new int[n];
        var slots = 0;
        for (var r = 0; r < n; r++) slot[r] = include[r] ? slots++ : -1;
        var velocity = new double[slots * imageFloats];
        var weightSum = new double[n];
        var best = Enumerable.Repeat(-1, n).ToArray();
        var bestWeight = new double[n];
        var degraded = new bool[n];
        foreach (var work in plan.Work)
        {
            if (!answers.TryGetValue(work.Expert, out var v))
            {
                foreach (var r in work.PlanRows.Where(r => include[r]))
                {
                    degraded[r] = true;
                    plan.Rows[r].Generation.LeftOut.Add(work.Expert);
                }
                continue;
            }
            if (v.Length != work.PlanRows.Length * imageFloats)
                throw new ArgumentException($"expert {work.Expert} answered {v.Length} floats for {work.PlanRows.Length} rows");
            for (var s = 0; s < work.PlanRows.Length; s++)
            {
                var r = work.PlanRows[s];
                if (!include[r]) continue;
                var w = plan.Weights[r * k + work.Expert];
                weightSum[r] += w;
                if (w > bestWeight[r]) (bestWeight[r], best[r]) = (w, work.Expert);
                var src = s * imageFloats;
                var dst = slot[r] * imageFloats;
                for (var j = 0; j < imageFloats; j++) velocity[dst + j] += w * v[src + j];
            }
        }

        var stalled = 0;
        var advanced = new HashSet<ServedGeneration>();
        var applied = 0;
        for (var r = 0; r < n; r++)
        {
            if (!include[r]) continue;
            applied++;
            var (g, i) = plan.Rows[r];
            g.InFlight[i] = false;
            g.QueueSeconds ??= g.Clock.Elapsed.TotalSeconds;
            if (weightSum[r] <= 0)
            {
                stalled++;
                g.RetriedRowSteps++;
                continue;
            }
            var dt = 1.0 / g.Spec.Steps;
            var offset = i * imageFloats;
            for (var j = 0; j < imageFloats; j++)
                g.X[offset + j] -= (float)(dt * velocity[slot[r] * imageFloats + j] / weightSum[r]);
            g.StepsDone[i]++;
            g.Routing[i].Add(best[r]);
            advanced.Add(g);
        }

        var completed = new List<CompletedGeneration>();
        foreach (var g in active.Where(g => g.Done).ToList())
        {
            active.Remove(g);
            var pixels = g.X.Select(v => (byte)Math.Round((Math.Clamp(v, -1f, 1f) + 1f) * 127.5f, MidpointRounding.ToEven)).ToArray();
            completed.Add(new CompletedGeneration(g.Id, g.Spec, g.X, pixels, [.. g.LeftOut], g.Routing.Select(r => r.ToArray()).ToArray(),
                g.RetriedRowSteps, g.QueueSeconds ?? 0, g.Clock.Elapsed.TotalSeconds));
        }
        return new StepOutcome(applied, degraded.Count(d => d), stalled, [.. advanced], completed);
    }
}
