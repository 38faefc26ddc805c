using System.Globalization;
using System.Text;
using Islands.Hosting;
using Islands.Diffusion.Data;
using Islands.Diffusion.IO;
using Islands.Diffusion.Metrics;
using Islands.Diffusion.Training;

namespace Islands.Cli.Experiments;

/// <summary>
/// Writes report/ from an experiment's finished stages: report.md (tables as mean ± standard deviation over seeds),
/// fid-vs-flops.png, the first seed's sample grids, and the plan and configurations that produced them.
/// </summary>
public static partial class DdmReport
{
    public const string Directory = "report";
    private static readonly string[] MainMethods = ["monolith", "top1", "top2", "full", "oracle"];

    public static string Write(DdmExperiment experiment, DdmPlan plan)
    {
        var root = Path.Combine(experiment.Output, Directory);
        System.IO.Directory.CreateDirectory(Path.Combine(root, "grids"));
        var evals = experiment.Stages.All<EvaluationOutcome>("eval-");
        var trains = experiment.Stages.All<TrainingOutcome>("train-");
        var routers = experiment.Stages.All<RouterOutcome>("router-");
        var failures = experiment.Stages.All<FailureOutcome>("failure-");
        var k = plan.Options.K;
        var main = DdmExperiment.ArmName("kmeans", k);
        var final = plan.EvalSteps[^1];

        EvaluationOutcome[] Find(string arm, string method, long step) =>
            [.. evals.Where(e => e.Arm == arm && e.Method == method && e.Step == step)];
        EvaluationOutcome[] Main(string method, long step) => method == "monolith" ? Find("monolith", "monolith", step) : Find(main, method, step);

        var md = new StringBuilder();
        var dataset = CanonicalDataset.Load(plan.Options.DataDirectory, verifyHashes: false);
        var data = (dataset.Manifest.Name, TrainCount: dataset.Train.Count, TestCount: dataset.Test.Count);
        md.AppendLine(Invariant($"# Decentralized Diffusion Models on {data.Name}: one monolith against {k} isolated experts at equal ") +
            Invariant($"training compute"));
        md.AppendLine();
        md.AppendLine(Invariant($"Produced by `islands experiment ddm` ({plan.Created:yyyy-MM-dd}, {plan.Machine}). {plan.Options.Seeds} seed(s); ") +
            Invariant($"every table shows mean ± standard deviation over seeds. FID and KID are computed in the feature space of the project's ") +
            Invariant($"evaluation classifier against the {data.TestCount} test images, on {plan.Scale.Samples} generated images per score, ") +
            Invariant($"{plan.Scale.SamplingSteps} Euler steps, no guidance."));
        md.AppendLine();

        md.AppendLine("## Summary");
        md.AppendLine();
        foreach (var line in Summary(plan, Main, final, failures, evals, main)) md.AppendLine($"- {line}");
        md.AppendLine();

        md.AppendLine("## Setup");
        md.AppendLine();
        var routerFlops = routers.Where(r => r.Arm == main).Select(r => r.Flops).DefaultIfEmpty(0).Average();
        var expertFlops = plan.Steps * (double)plan.Scale.MonolithBatch * 3 * plan.Calibration.ExpertForwardFlops;
        md.AppendLine("| | |");
        md.AppendLine("|---|---|");
        md.AppendLine(Invariant($"| training steps, every run | {plan.Steps} (planned from a {plan.Options.BudgetMinutes:0.#}-minute budget and ") +
            Invariant($"the throughput measured on this machine) |"));
        md.AppendLine(Invariant($"| monolith | batch {plan.Scale.MonolithBatch} on all {data.TrainCount} training images |"));
        md.AppendLine(Invariant($"| DDM | {k} experts, batch {plan.Scale.MonolithBatch / k} each, one per cluster of a balanced k-means partition ") +
            Invariant($"of the images' PCA embeddings; no communication |"));
        md.AppendLine(Invariant($"| equal compute | every expert has the monolith's architecture and trains as many steps on {k}x smaller ") +
            Invariant($"batches: together the same training FLOPs (plus the router's) and, with top-1 routing, the same sampling FLOPs per image, ") +
            Invariant($"but {k}x the parameters |"));
        md.AppendLine(Invariant($"| model, every run | UNet, {plan.Scale.BaseChannels} base channels (x1, x2, x4), ") +
            Invariant($"{plan.Calibration.ExpertForwardFlops / 1e9:F3} GFLOP per forward pass; {plan.Scale.Precision} training and sampling |"));
        md.AppendLine(Invariant($"| router | MLP on (x_t, t, class), {plan.Scale.RouterSteps} steps at batch {plan.Scale.RouterBatch}: ") +
            Invariant($"{routerFlops / 1e12:F3} TFLOP = {100 * routerFlops / Math.Max(1, expertFlops + routerFlops):F2} % of DDM's training ") +
            Invariant($"FLOPs, counted in DDM's budget |"));
        md.AppendLine(Invariant($"| training FLOPs at the end | monolith {expertFlops / 1e12:F2} TFLOP; DDM ") +
            Invariant($"{(expertFlops + routerFlops) / 1e12:F2} TFLOP (3 x forward FLOPs per image, counted by forward hooks) |"));
        md.AppendLine(Invariant($"| scored at | steps {string.Join(", ", plan.EvalSteps)} |"));
        md.AppendLine();

        md.AppendLine("## Main result at the end of training");
        md.AppendLine();
        md.AppendLine("| method | FID | KID | training TFLOP | sampling GFLOP per image |");
        md.AppendLine("|---|---|---|---|---|");
        foreach (var method in MainMethods)
        {
            var r = Main(method, final);
            if (r.Length == 0) continue;
            md.AppendLine(Invariant($"| {Label(method)} | {Stat(r.Select(x => x.Fid), "F2")} | {Stat(r.Select(x => x.Kid), "F4")} | ") +
                Invariant($"{r.Average(x => x.TrainFlops) / 1e12:F2} | {r.Average(x => x.SamplingGflopPerImage):F3} |"));
        }
        md.AppendLine();

        md.AppendLine("## Along training");
        md.AppendLine();
        md.AppendLine($"| step | {string.Join(" | ", MainMethods.Select(Label))} |");
        md.AppendLine($"|---|{string.Concat(MainMethods.Select(_ => "---|"))}");
        foreach (var step in plan.EvalSteps)
            md.AppendLine($"| {step} | " +
                $"{string.Join(" | ", MainMethods.Select(m => Main(m, step) is { Length: > 0 } r ? Stat(r.Select(x => x.Fid), "F2") : "-"))} |");
        md.AppendLine();
        var plot = Plot(plan, Main, Path.Combine(root, "fid-vs-flops.png"));
        if (plot) md.AppendLine("![FID against training FLOPs](fid-vs-flops.png)").AppendLine();

        md.AppendLine("## Ablations (top-1 routing, end of training)");
        md.AppendLine();
        md.AppendLine("| ablation | variant | FID | KID |");
        md.AppendLine("|---|---|---|---|");
        void Row(string ablation, string variant, EvaluationOutcome[] r)
        {
            if (r.Length > 0) md.AppendLine($"| {ablation} | {variant} | {Stat(r.Select(x => x.Fid), "F2")} | {Stat(r.Select(x => x.Kid), "F4")} |");
        }
        Row("partitions", $"clustered (k-means), K={k}", Find(main, "top1", final));
        Row("partitions", $"random shards, K={k}", Find(DdmExperiment.ArmName("random", k), "top1", final));
        foreach (var kk in plan.Ks.Order())
            Row("experts", $"K={kk} (batch {plan.Scale.MonolithBatch / kk} each)", Find(DdmExperiment.ArmName("kmeans", kk), "top1", final));
        Row("router", "learned (MLP)", Find(main, "top1", final));
        Row("router", "training-free (a Gaussian per cluster and class)", Find(main, "top1gaussian", final));
        Row("reference", "monolith", Find("monolith", "monolith", final));
        md.AppendLine();

        md.AppendLine("## What a failure costs");
        md.AppendLine();
        md.AppendLine(Invariant($"Expert 0 of the K={k} run is trained again by `islands train expert` in its own process, checkpointing every ") +
            Invariant($"{failures.FirstOrDefault()?.CheckpointEvery ?? plan.Steps / 3} steps. Halfway through, the process is killed with SIGKILL ") +
            Invariant($"(it gets no chance to save), and the same command is run again: it resumes from the last checkpoint it committed. The ") +
            Invariant($"ensemble is then scored with this expert in place of the uninterrupted one."));
        md.AppendLine();
        md.AppendLine("The uninterrupted baseline trained in the experiment's own process; the interrupted one pays two process starts on top of " +
            "the redone steps.");
        md.AppendLine();
        md.AppendLine("| seed | uninterrupted s | killed after s | resumed from step | resumed run s | wall-clock lost s | same final weights | " +
            "FID top-1, interrupted | FID top-1, uninterrupted |");
        md.AppendLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var f in failures)
        {
            var broken = Find($"failure-k{k}", "top1", final).Where(e => e.Seed == f.Seed)
                .Select(e => e.Fid.ToString("F2", CultureInfo.InvariantCulture)).FirstOrDefault() ?? "-";
            var whole = Find(main, "top1", final).Where(e => e.Seed == f.Seed).Select(e => e.Fid.ToString("F2", CultureInfo.InvariantCulture))
                .FirstOrDefault() ?? "-";
            md.AppendLine(Invariant($"| {f.Seed} | {f.BaselineSeconds:F1} | ") +
                Invariant($"{(f.Killed ? f.KilledAfterSeconds.ToString("F1", CultureInfo.InvariantCulture) : "not killed")} | {f.ResumedFromStep} ") +
                Invariant($"of {f.Steps} | {f.ResumedSeconds:F1} | {f.LostSeconds:F1} | ") +
                Invariant($"{(f.SameWeightsAsUninterrupted ? "yes, bit for bit" : "no")} | {broken} | {whole} |"));
        }
        md.AppendLine();
        md.AppendLine("The other experts never notice: in an island deployment each expert trains in its own cluster, so this is all a failure " +
            "costs the ensemble.");
        md.AppendLine();

        md.AppendLine("## Router accuracy by t (held-out images)");
        md.AppendLine();
        var arms = routers.Select(r => r.Arm).Distinct().Order(StringComparer.Ordinal).ToList();
        var bands = routers.FirstOrDefault()?.Accuracy ?? [];
        md.AppendLine($"| t | {string.Join(" | ", arms.Select(a => $"{a} (chance {100.0 / ArmK(a):F0} %)"))} |");
        md.AppendLine($"|---|{string.Concat(arms.Select(_ => "---|"))}");
        for (var i = 0; i < bands.Count; i++)
        {
            var band = i;
            md.AppendLine(Invariant($"| {bands[band].TMin:F1}-{bands[band].TMax:F1} | {string.Join(" | ", arms.Select(a =>
                Stat(routers.Where(r => r.Arm == a && r.Accuracy.Count > band).Select(r => 100 * r.Accuracy[band].Accuracy), "F1") + " %"))} |"));
        }
        md.AppendLine();

        md.AppendLine("## Samples (seed 0, end of training)");
        md.AppendLine();
        foreach (var e in evals.Where(e => e.Seed == 0 && e.Grid is not null).OrderBy(e => e.Arm, StringComparer.Ordinal)
            .ThenBy(e => e.Method, StringComparer.Ordinal))
        {
            var name = $"{e.Arm}-{e.Method}.png";
            File.Copy(Path.Combine(experiment.Output, e.Grid!), Path.Combine(root, "grids", name), overwrite: true);
            md.AppendLine(Invariant($"**{e.Arm} {Label(e.Method)}** (FID {e.Fid:F2})  ")).AppendLine($"![{e.Arm} {e.Method}](grids/{name})")
                .AppendLine();
        }

        md.AppendLine("## Reproduce");
        md.AppendLine();
        md.AppendLine("```");
        md.AppendLine(plan.Command);
        md.AppendLine("```");
        md.AppendLine();
        md.AppendLine("Rerunning the same command resumes: every finished stage is kept in `stages/`, every training run checkpoints. The plan " +
            "below (options, scale, the throughput it was planned from) is frozen in `plan.json`; the seed fixes partitions, training, the classes " +
            "generated and the sampling noise.");
        md.AppendLine();
        md.AppendLine("```json").AppendLine(Json.Serialize(plan)).AppendLine("```");
        var monolithConfig = Path.Combine(experiment.MonolithRun(0), RunDirectory.ConfigFile);
        var expertConfig = Path.Combine(experiment.ExpertRun(0, main, 0), RunDirectory.ConfigFile);
        var routerConfig = Path.Combine(experiment.RouterRunDirectory(0, main), RunDirectory.ConfigFile);
        foreach (var (title, path) in new[] { ("monolith, seed 0", monolithConfig), ($"expert 0 of K={k}, seed 0", expertConfig),
            ($"router of K={k}, seed 0", routerConfig) })
            if (File.Exists(path)) md.AppendLine().AppendLine($"{title} (`config.json`):").AppendLine().AppendLine("```json")
                .AppendLine(File.ReadAllText(path).TrimEnd()).AppendLine("```");
        var evaluatorCache = Evaluator.CacheDirectory(dataset);
        var evaluatorName = $"classifier-e{plan.Scale.EvaluatorEpochs}-s0{(plan.Scale.EvaluatorImages is { } limit ? $"-limit{limit}" : "")}.json";
        var evaluatorInfo = File.Exists(Path.Combine(evaluatorCache, evaluatorName)) ? [Path.Combine(evaluatorCache, evaluatorName)]
            : Array.Empty<string>();
        foreach (var info in evaluatorInfo)
            md.AppendLine().AppendLine($"evaluation classifier (`{Path.GetFileName(info)}`):").AppendLine().AppendLine("```json")
                .AppendLine(File.ReadAllText(info).TrimEnd()).AppendLine("```");

        var reportPath = Path.Combine(root, "report.md");
        AtomicFile.WriteAllText(reportPath, md.ToString());
        return reportPath;
    }

    private static bool Plot(DdmPlan plan, Func<string, long, EvaluationOutcome[]> main, string path)
    {
        var plt = new ScottPlot.Plot();
        var any = false;
        foreach (var method in MainMethods)
        {
            var points = plan.EvalSteps.Select(s => main(method, s)).Where(r => r.Length > 0).ToList();
            if (points.Count == 0) continue;
            var xs = points.Select(r => r.Average(x => x.TrainFlops) / 1e12).ToArray();
            var ys = points.Select(r => r.Average(x => x.Fid)).ToArray();
            var scatter = plt.Add.Scatter(xs, ys);
            scatter.LegendText = Label(method);
            scatter.MarkerSize = 7;
            if (points.All(r => r.Length > 1))
            {
                var errors = plt.Add.ErrorBar(xs, ys, points.Select(r => StandardDeviation(r.Select(x => x.Fid))).ToArray());
                errors.Color = scatter.Color;
            }
            any = true;
        }
        if (!any) return false;
        plt.Title(Invariant($"FID against training compute (K={plan.Options.K}, mean ± sd over {plan.Options.Seeds} seed(s))"));
        plt.XLabel("training TFLOP (DDM includes its router)");
        plt.YLabel("FID (lower is better)");
        plt.ShowLegend(ScottPlot.Alignment.UpperRight);
        var temp = AtomicFile.TempSibling(Path.GetFullPath(path)) + ".png";
        plt.SavePng(temp, 800, 500);
        File.Move(temp, path, overwrite: true);
        return true;
    }

    private static int ArmK(string arm) => int.Parse(arm[(arm.LastIndexOf('k') + 1)..], CultureInfo.InvariantCulture);

    private static string Label(string method) => method switch
    {
        "monolith" => "monolith",
        "top1" => "DDM top-1",
        "top2" => "DDM top-2",
        "full" => "DDM full",
        "oracle" => "DDM oracle",
        "top1gaussian" => "DDM top-1, Gaussian router",
        _ => method,
    };

    internal static string Stat(IEnumerable<double> values, string format)
    {
        var v = values.ToList();
        if (v.Count == 0) return "-";
        var mean = v.Average().ToString(format, CultureInfo.InvariantCulture);
        return v.Count == 1 ? mean : $"{mean} ± {StandardDeviation(v).ToString(format, CultureInfo.InvariantCulture)}";
    }

    internal static double StandardDeviation(IEnumerable<double> values)
    {
        var v = values.ToList();
        if (v.Count < 2) return 0;
        var mean = v.Average();
        return Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Count - 1));
    }

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
