namespace Islands.Cli.Experiments;

public static partial class DdmReport
{
    private static IEnumerable<string> Summary(DdmPlan plan, Func<string, long, EvaluationOutcome[]> main, long final,
        IReadOnlyList<FailureOutcome> failures, IReadOnlyList<EvaluationOutcome> evals, string mainArm)
    {
        var monolith = main("monolith", final);
        var top1 = main("top1", final);
        if (monolith.Length == 0 || top1.Length == 0)
        {
            yield return "The experiment has not finished its main comparison yet; rerun the command to continue.";
            yield break;
        }
        var m = monolith.Average(x => x.Fid);
        var t = top1.Average(x => x.Fid);
        var change = 100 * (t - m) / m;
        var paired = top1.Join(monolith, a => a.Seed, b => b.Seed, (a, b) => a.Fid < b.Fid).ToList();
        yield return Invariant($"At the end of training, DDM with top-1 routing scores FID {Stat(top1.Select(x => x.Fid), "F2")} against the ") +
            Invariant($"monolith's {Stat(monolith.Select(x => x.Fid), "F2")}: {Math.Abs(change):F0} % ") +
            Invariant($"{(change < 0 ? "lower (better)" : "higher (worse)")}, at ") +
            Invariant($"{top1.Average(x => x.TrainFlops) / monolith.Average(x => x.TrainFlops):F3}x the monolith's training FLOPs (the router's ") +
            Invariant($"share). DDM was better in {paired.Count(p => p)} of {paired.Count} seeds.");
        var best = MainMethods.Skip(1).Where(x => x != "oracle").Select(x => (Method: x, R: main(x, final))).Where(x => x.R.Length > 0)
            .OrderBy(x => x.R.Average(r => r.Fid)).First();
        yield return Invariant($"Of the routing strategies, {Label(best.Method)} scored best (FID {Stat(best.R.Select(r => r.Fid), "F2")}); the ") +
            Invariant($"paper found top-1 best on ImageNet.");
        var random = evals.Where(e => e.Arm == DdmExperiment.ArmName("random", plan.Options.K) && e.Method == "top1" && e.Step == final).ToList();
        if (random.Count > 0)
            yield return Invariant($"Random shards instead of clusters: FID {Stat(random.Select(x => x.Fid), "F2")} against ") +
                Invariant($"{Stat(top1.Select(x => x.Fid), "F2")} for clustered partitions.");
        var ks = plan.Ks.Order()
            .Select(kk => (K: kk,
                R: evals.Where(e => e.Arm == DdmExperiment.ArmName("kmeans", kk) && e.Method == "top1" && e.Step == final).ToList()))
            .Where(x => x.R.Count > 0).ToList();
        if (ks.Count > 1)
            yield return Invariant($"Number of experts at the same budget: ") +
                Invariant($"{string.Join(", ", ks.Select(x => $"K={x.K} FID {Stat(x.R.Select(r => r.Fid), "F2")}"))}.");
        var gaussian = evals.Where(e => e.Arm == mainArm && e.Method == "top1gaussian" && e.Step == final).ToList();
        if (gaussian.Count > 0)
            yield return Invariant($"The training-free Gaussian router: FID {Stat(gaussian.Select(x => x.Fid), "F2")} against ") +
                Invariant($"{Stat(top1.Select(x => x.Fid), "F2")} for the learned router.");
        if (failures.Count > 0)
            yield return Invariant($"Killing one expert's training halfway cost {Stat(failures.Select(f => f.LostSeconds), "F1")} s of wall-clock ") +
                Invariant($"(its uninterrupted training took {Stat(failures.Select(f => f.BaselineSeconds), "F1")} s); the resumed expert's final ") +
                Invariant($"weights were {(failures.All(f => f.SameWeightsAsUninterrupted)
                    ? "bit for bit those of the uninterrupted run" : "not identical to the uninterrupted run's")}.");
    }
}
