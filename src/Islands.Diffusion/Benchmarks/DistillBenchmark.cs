using System.Diagnostics;
using Islands.Diffusion.Distillation;
using static TorchSharp.torch;

namespace Islands.Diffusion.Benchmarks;

/// <summary>One round of <see cref="DistillBenchmark"/>: seconds per step of each kind, measured back to back.</summary>
public sealed record DistillRound(int Round, double SamplingStepSeconds, double SdsStepSeconds, double BridgeStepSeconds)
{
    public double SdsOverSampling => SdsStepSeconds / SamplingStepSeconds;
    public double BridgeOverSds => BridgeStepSeconds / SdsStepSeconds;
}

public sealed record DistillBenchmarkResult(int Count, int StepsPerRound, string Strategy, IReadOnlyList<DistillRound> Rounds,
    double SamplingStepsPerSecond,
    double SdsStepsPerSecond, double BridgeStepsPerSecond, double MedianSdsOverSampling, double MedianBridgeOverSds);

/// <summary>
/// `islands bench distill`: the cost of a distillation step beside one guided sampling step of the same ensemble (both
/// two network rows per image), for plain SDS and for the bridge's calibrated stage, in rounds that alternate the three
/// so that the machine's drift falls on all of them alike. Ratios are taken within a round.
/// </summary>
public static class DistillBenchmark
{
    public static DistillBenchmarkResult Run(string store, int count, int steps, int rounds, string strategy, Action<string>? log = null)
    {
        using var prior = EnsemblePrior.Load(store, strategy);
        var calibratedSource = prior.DegradedLabel(0) is not null;
        var sds = new DistillConfig(Job: "sds", Store: store, Count: count, Steps: int.MaxValue / 2, Guidance: 7.5, Strategy: strategy);
        var bridge = sds with { Job = "bridge", SwitchStep = 0, DegradedSource = calibratedSource, SourceClass = calibratedSource ? null : 1 };
        using var sdsTrainer = new DistillationTrainer(sds, prior.Field(), prior.Shape);
        using var bridgeTrainer = new DistillationTrainer(bridge, prior.Field(), prior.Shape,
            views: [new DistillView(false, 0, calibratedSource ? prior.DegradedLabel(0)!.Value : 1)]);
        var guided = prior.Ensemble.Field(7.5);
        using var generator = new Generator(5);
        using var x = randn([count, prior.Shape.C, prior.Shape.H, prior.Shape.W], generator: generator);
        using var classes = zeros(count, dtype: ScalarType.Int64);
        double Sampling()
        {
            var watch = Stopwatch.StartNew();
            for (var i = 0; i < steps; i++)
            {
                using var scope = NewDisposeScope();
                guided(x, 0.5, classes, 0);
            }
            return watch.Elapsed.TotalSeconds / steps;
        }
        double Distill(DistillationTrainer trainer)
        {
            var before = trainer.TrainSeconds;
            trainer.Train(steps);
            return (trainer.TrainSeconds - before) / steps;
        }
        Sampling();
        Distill(sdsTrainer);
        Distill(bridgeTrainer);
        var results = new List<DistillRound>();
        for (var r = 1; r <= rounds; r++)
        {
            var round = new DistillRound(r, Sampling(), Distill(sdsTrainer), Distill(bridgeTrainer));
            results.Add(round);
            log?.Invoke($"round {r}: sampling step {round.SamplingStepSeconds * 1000:F1} ms, sds {round.SdsStepSeconds * 1000:F1} ms, bridge " +
                $"{round.BridgeStepSeconds * 1000:F1} ms");
        }
        static double Median(IEnumerable<double> values)
        {
            var sorted = values.Order().ToList();
            return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
        }
        return new DistillBenchmarkResult(count, steps, strategy, results, 1 / Median(results.Select(r => r.SamplingStepSeconds)),
            1 / Median(results.Select(r => r.SdsStepSeconds)), 1 / Median(results.Select(r => r.BridgeStepSeconds)),
            Median(results.Select(r => r.SdsOverSampling)), Median(results.Select(r => r.BridgeOverSds)));
    }
}
