using System.Diagnostics;
using Akka.Actor;
using Islands.Diffusion.Serving;
using Tensor = TorchSharp.torch.Tensor;

namespace Islands.Actors.Serving;

/// <summary>A generation the router is computing: who waits for it, its deadline, its span and the checkpoints that served it.</summary>
internal sealed class TrackedGeneration(Generate request, GenerationSpec spec, DateTime deadline, Activity? span)
{
    public Generate Request { get; } = request;
    public GenerationSpec Spec { get; } = spec;
    public DateTime Deadline { get; } = deadline;
    public Activity? Span { get; } = span;
    public List<IActorRef> Subscribers { get; } = [];
    public Dictionary<string, ServedCheckpoint> Checkpoints { get; } = [];
    /// <summary>Steps every image has done, as last reported (a plan applied in parts may advance some images only).</summary>
    public int LastReportedStep { get; set; }
}

/// <summary>A planned step whose experts are computing: the answers so far, who is still awaited, and which rows are applied.</summary>
internal sealed class StepInFlight(StepPlan plan, Activity? span) : IDisposable
{
    public StepPlan Plan { get; } = plan;
    public Activity? Span { get; } = span;
    public Stopwatch Clock { get; } = Stopwatch.StartNew();
    public Dictionary<int, Tensor> Answers { get; } = [];
    public Dictionary<int, ServedCheckpoint> Checkpoints { get; } = [];
    public HashSet<int> Awaiting { get; } = [.. plan.Work.Select(w => w.Expert)];
    public HashSet<int> AppliedRows { get; } = [];
    /// <summary>Waiting longer than its experts usually take: the next step need not wait for it.</summary>
    public bool Straggling { get; set; }
    public int DegradedRows { get; set; }
    public int StalledRows { get; set; }

    /// <summary>Rows not applied yet whose experts have all answered (or been given up on).</summary>
    public List<int> TakeReadyRows()
    {
        var rows = Enumerable.Range(0, Plan.Rows.Count).Where(r => !AppliedRows.Contains(r) && !Plan.ExpertsOf(r).Any(Awaiting.Contains)).ToList();
        AppliedRows.UnionWith(rows);
        return rows;
    }

    public void Dispose()
    {
        Span?.SetTag("islands.degraded_rows", DegradedRows);
        Span?.SetTag("islands.stalled_rows", StalledRows);
        Span?.Dispose();
        Plan.Dispose();
        foreach (var answer in Answers.Values) answer.Dispose();
    }
}
