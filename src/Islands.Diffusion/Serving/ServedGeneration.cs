using System.Diagnostics;
using Islands.Diffusion.Sampling;
using static TorchSharp.torch;

namespace Islands.Diffusion.Serving;

/// <summary>
/// One request's images as they integrate, as tensors; each image keeps its own step and stage (Heun's corrector is a
/// second evaluation of the same step), so a big request can span batches and a slow expert holds back only its rows.
/// </summary>
public sealed class ServedGeneration : IDisposable
{
    internal ServedGeneration(string id, GenerationSpec spec, Tensor noise)
    {
        Id = id;
        Spec = spec;
        X = noise.DetachFromDisposeScope();
        StepsDone = new int[spec.Count];
        Stage = new int[spec.Count];
        InFlight = new bool[spec.Count];
        Routing = Enumerable.Range(0, spec.Count).Select(_ => new List<int>(spec.Steps)).ToArray();
    }

    /// <summary>A score query: one evaluation of the routed ensemble at given points, whose answer replaces X.</summary>
    internal ServedGeneration(string id, ScoreSpec score, Tensor points)
        : this(id, new GenerationSpec(score.Count, score.Classes, 1, 1, score.Strategy, 0), points)
    {
        Score = score;
    }

    public string Id { get; }
    public GenerationSpec Spec { get; }
    /// <summary>Set for a score query: its rows' own times and guidance scales; its result is the routed velocity at its points.</summary>
    public ScoreSpec? Score { get; }
    /// <summary>[Count, C, H, W] float32 states.</summary>
    internal Tensor X { get; }
    /// <summary>Heun: each image's velocity at the start of its current step, kept for the corrector.</summary>
    internal Tensor? StartVelocity { get; private set; }
    internal int[] StepsDone { get; }
    /// <summary>0: the step's first evaluation (at x_t); 1: Heun's corrector (at the Euler prediction).</summary>
    internal int[] Stage { get; }
    /// <summary>Images whose current evaluation is with the experts (planned, not yet applied): no other plan may take them.</summary>
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
    /// <summary>Removed (failed or timed out) while a plan still held some of its rows: those rows are dropped when applied.</summary>
    internal bool Removed { get; private set; }
    internal double Dt => 1.0 / Spec.Steps;

    internal bool Ready(int image) => StepsDone[image] < Spec.Steps && !InFlight[image];

    internal float Time(int image) => Score?.T[image] ?? (float)FlowStep.Time(StepsDone[image], Spec.Steps, Stage[image]);

    internal float Cfg(int image) => Score?.Cfg[image] ?? (float)Spec.Cfg;

    internal long Class(int image) => Spec.Classes?[image] ?? -1;

    /// <summary>Where the images' current evaluation happens: x_t, or for Heun's corrector the Euler prediction.</summary>
    internal Tensor Points(long[] images, bool corrector)
    {
        using var scope = NewDisposeScope();
        var rows = tensor(images);
        var x = X.index_select(0, rows);
        return (corrector ? FlowStep.Predict(x, StartVelocity!.index_select(0, rows), Dt) : x).MoveToOuterDisposeScope();
    }

    /// <summary>Takes the combined velocities of the images' current evaluation: a step, or Heun's prediction.</summary>
    internal void Advance(long[] images, Tensor velocity, int[] routedTo)
    {
        using var scope = NewDisposeScope();
        if (Score is not null)
        {
            X.index_copy_(0, tensor(images), velocity.to_type(X.dtype));
            for (var j = 0; j < images.Length; j++)
            {
                Routing[images[j]].Add(routedTo[j]);
                StepsDone[images[j]]++;
            }
            return;
        }
        var predictor = new List<int>();
        var euler = new List<int>();
        var corrector = new List<int>();
        for (var j = 0; j < images.Length; j++)
        {
            var i = (int)images[j];
            if (Stage[i] == 1) corrector.Add(j);
            else if (FlowStep.HasCorrector(Spec.Method, StepsDone[i], Spec.Steps)) predictor.Add(j);
            else euler.Add(j);
            if (Stage[i] == 0) Routing[i].Add(routedTo[j]);
        }
        if (predictor.Count > 0)
        {
            StartVelocity ??= zeros_like(X).DetachFromDisposeScope();
            var (rows, v) = Pick(images, velocity, predictor);
            StartVelocity.index_copy_(0, rows, v);
            foreach (var j in predictor) Stage[images[j]] = 1;
        }
        if (euler.Count > 0)
        {
            var (rows, v) = Pick(images, velocity, euler);
            X.index_copy_(0, rows, FlowStep.Predict(X.index_select(0, rows), v, Dt));
        }
        if (corrector.Count > 0)
        {
            var (rows, v) = Pick(images, velocity, corrector);
            X.index_copy_(0, rows, FlowStep.Correct(X.index_select(0, rows), StartVelocity!.index_select(0, rows), v, Dt));
        }
        foreach (var j in euler.Concat(corrector))
        {
            StepsDone[images[j]]++;
            Stage[images[j]] = 0;
        }
    }

    private static (Tensor Rows, Tensor Velocity) Pick(long[] images, Tensor velocity, List<int> members) =>
        (tensor(members.Select(j => images[j]).ToArray()), velocity.index_select(0, tensor(members.Select(j => (long)j).ToArray())));

    internal CompletedGeneration Complete()
    {
        using var scope = NewDisposeScope();
        var samples = X.contiguous().data<float>().ToArray();
        var pixels = Score is null ? Data.ImageTensors.ToBytes(X) : [];
        var nonFinite = (int)X.isfinite().logical_not().flatten(1).any(1).sum().item<long>();
        return new CompletedGeneration(Id, Spec, samples, pixels, [.. LeftOut], Routing.Select(r => r.ToArray()).ToArray(), RetriedRowSteps,
            QueueSeconds ?? 0, Clock.Elapsed.TotalSeconds, nonFinite);
    }

    public void Dispose()
    {
        Removed = true;
        X.Dispose();
        StartVelocity?.Dispose();
    }
}
