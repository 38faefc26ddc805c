namespace Islands.Cli.Experiments;

public sealed partial class DdmExperiment
{
    /// <summary>The stages in the order that gives the main comparison first, then the ablations, then the failure run, seed by seed.</summary>
    private List<Stage> PlanStages(DdmPlan plan)
    {
        var scale = plan.Scale;
        var k = plan.Options.K;
        var b = scale.MonolithBatch;
        double TrainSeconds(int batch) => plan.Steps * (double)batch / plan.Calibration.TrainImagesPerSecond[batch];
        double EvalSeconds(int rowsPerImagePerStep)
            => (double)scale.Samples * scale.SamplingSteps * rowsPerImagePerStep / plan.Calibration.SampleRowsPerSecond;
        var routerSeconds = scale.RouterSteps / plan.Calibration.RouterStepsPerSecond;
        var stages = new List<Stage>();
        for (var seed = 0; seed < plan.Options.Seeds; seed++)
        {
            var s = seed;
            var main = ArmName("kmeans", k);
            stages.Add(new Stage($"train-s{s}-monolith", TrainSeconds(b), (c, p) => TrainMonolith(c, s, p)));
            AddArm(stages, s, "kmeans", k, TrainSeconds(b / k), routerSeconds);
            foreach (var step in plan.EvalSteps)
            {
                var st = step;
                stages.Add(new Stage($"eval-s{s}-monolith-monolith-{st:D9}", EvalSeconds(1), (c, _) => EvaluateMonolith(c, s, st)));
                foreach (var (method, rows) in new[] { ("top1", 1), ("top2", Math.Min(2, k)), ("full", k), ("oracle", 1) })
                    stages.Add(new Stage($"eval-s{s}-{main}-{method}-{st:D9}", EvalSeconds(rows),
                        (c, _) => EvaluateEnsemble(c, s, main, "kmeans", k, method, st)));
            }
            var final = plan.EvalSteps[^1];
            stages.Add(new Stage($"eval-s{s}-{main}-top1gaussian-{final:D9}", EvalSeconds(1),
                (c, _) => EvaluateEnsemble(c, s, main, "kmeans", k, "top1gaussian", final)));
            foreach (var other in plan.Ks.Where(x => x != k))
            {
                var kk = other;
                AddArm(stages, s, "kmeans", kk, TrainSeconds(b / kk), routerSeconds);
                stages.Add(new Stage($"eval-s{s}-{ArmName("kmeans", kk)}-top1-{final:D9}", EvalSeconds(1),
                    (c, _) => EvaluateEnsemble(c, s, ArmName("kmeans", kk), "kmeans", kk, "top1", final)));
            }
            AddArm(stages, s, "random", k, TrainSeconds(b / k), routerSeconds);
            stages.Add(new Stage($"eval-s{s}-{ArmName("random", k)}-top1-{final:D9}", EvalSeconds(1),
                (c, _) => EvaluateEnsemble(c, s, ArmName("random", k), "random", k, "top1", final)));
            stages.Add(new Stage($"failure-s{s}", TrainSeconds(b / k) / k + 2 * DdmPlan.ProcessStartSeconds, (c, p) => RunFailure(c, s, p)));
            stages.Add(new Stage($"eval-s{s}-failure-k{k}-top1-{final:D9}", EvalSeconds(1),
                (c, _) => EvaluateEnsemble(c, s, $"failure-k{k}", "kmeans", k, "top1", final)));
        }
        return stages;
    }

    private void AddArm(List<Stage> stages, int seed, string method, int k, double expertsSeconds, double routerSeconds)
    {
        var arm = ArmName(method, k);
        for (var e = 0; e < k; e++)
        {
            var expert = e;
            stages.Add(new Stage($"train-s{seed}-{arm}-e{expert}", expertsSeconds / k, (c, p) => TrainExpert(c, seed, arm, method, k, expert, p)));
        }
        stages.Add(new Stage($"router-s{seed}-{arm}", routerSeconds, (c, p) => TrainRouter(c, seed, arm, method, k, p)));
    }
}
