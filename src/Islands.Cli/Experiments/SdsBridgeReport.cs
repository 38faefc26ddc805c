using System.Globalization;
using System.Text;
using Islands.Diffusion.Distillation;
using Islands.Diffusion.IO;

namespace Islands.Cli.Experiments;

/// <summary>
/// The report of <c>islands experiment sds-bridge</c> (report/report.md beside translation.png, grids and GIFs): the
/// table of sampling against sds, nfsd and the bridge (mean ± sd over seeds of the per-seed averages over classes), the
/// translation's realism against faithfulness, and sentences that say, from the numbers, what held and what did not.
/// </summary>
public static class SdsBridgeReport
{
    public const string Directory = "report";

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    public static string Write(SdsBridgeExperiment experiment, SdsBridgePlan plan)
    {
        var root = Path.Combine(experiment.Output, Directory);
        System.IO.Directory.CreateDirectory(Path.Combine(root, "grids"));
        var methods = experiment.MethodOutcomes();
        var translations = experiment.TranslationOutcomes();
        var o = plan.Options;
        string ClassName(int c) => c < plan.ClassNames.Length ? plan.ClassNames[c] : c.ToString(CultureInfo.InvariantCulture);
        var data = DistillationInputs.Dataset(o.Store);
        var real = data is null ? null : o.Classes.Select(c =>
        {
            using var images = SdsBridgeExperiment.RealImages(data, c);
            return DistillationRun.Stats(images);
        }).ToList();

        // Per seed: the average over classes; the table's mean ± sd is over seeds.
        double[] PerSeed(string method, Func<MethodOutcome, double> metric) =>
            [.. methods.Where(m => m.Method == method).GroupBy(m => m.Seed).Select(g => g.Average(metric))];
        var md = new StringBuilder();
        md.AppendLine(Invariant($"# Score distillation with the islands' ensemble as the prior: sampling, SDS, NFSD and the bridge"));
        md.AppendLine();
        md.AppendLine(Invariant($"Produced by `{plan.CommandLine}` ({plan.Created:yyyy-MM-dd}, {plan.Machine}). Prior: the published experts and ") +
            Invariant($"router of `{o.Store}`, routed top-1. Classes: {string.Join(", ", o.Classes.Select(ClassName))}; {o.Seeds} seed(s); ") +
            Invariant($"{o.Count} images per class and seed; {o.Steps} distillation steps (AdamW on the pixels, lr 0.01, t uniform in ") +
            Invariant($"[0.02, 0.98], guidance {o.Guidance}; the bridge switches to its calibrated source, \"degraded, class\", ") +
            Invariant($"at step {o.Steps / 2}; ") +
            Invariant($"nfsd uses that source from the start). Sampling: {plan.SamplingSteps} Euler steps at guidance {plan.SamplingCfg}. ") +
            Invariant($"FID and KID are computed in the project's classifier's feature space against the test images of each class; p(class) ") +
            Invariant($"is that classifier's probability of the wanted class. With {o.Count} images per score, FID is biased upwards and noisy: ") +
            Invariant($"compare methods with each other, not with FIDs elsewhere."));
        if (o.Quick) md.AppendLine().AppendLine("**Quick mode**: tiny counts and steps that test the pipeline; the numbers mean nothing.");
        md.AppendLine();
        md.AppendLine("## Class to image");
        md.AppendLine();
        md.AppendLine("| method | p(class) ↑ | FID ↓ | KID ↓ | saturation | Laplacian variance | ms per step |");
        md.AppendLine("|---|---|---|---|---|---|---|");
        foreach (var method in SdsBridgePlan.Methods)
        {
            if (!methods.Any(m => m.Method == method)) continue;
            md.AppendLine($"| {method} | {DdmReport.Stat(PerSeed(method, m => m.TargetProbability), "F3")} | " +
                $"{DdmReport.Stat(PerSeed(method, m => m.Fid), "F1")} | {DdmReport.Stat(PerSeed(method, m => m.Kid), "F3")} | " +
                $"{DdmReport.Stat(PerSeed(method, m => 100 * m.Saturation), "F1")} % | " +
                $"{DdmReport.Stat(PerSeed(method, m => m.LaplacianVariance), "F2")} | " +
                $"{DdmReport.Stat(PerSeed(method, m => 1000 * m.SecondsPerStep), "F0")} |");
        }
        if (real is not null)
            md.AppendLine(Invariant($"| real test images | | | | {100 * real.Average(r => r.Saturation):F1} % | ") +
                Invariant($"{real.Average(r => r.LaplacianVariance):F2} | |"));
        md.AppendLine();
        md.AppendLine("Saturation is the share of pixels within 2 % of the range's ends; the Laplacian's variance measures sharpness " +
            "(an over-smoothed " +
            "image has less of it than the real ones, an over-sharpened one more). \"ms per step\" is one sampling step or one distillation step " +
            "of the whole batch.");
        md.AppendLine();
        foreach (var sentence in Findings(methods, real, PerSeed)) md.AppendLine("- " + sentence);
        md.AppendLine();
        var first = o.Classes[0];
        foreach (var method in SdsBridgePlan.Methods)
        {
            var shown = methods.FirstOrDefault(m => m.Method == method && m.Class == first && m.Seed == 0);
            if (shown is null) continue;
            var gridName = $"grids/{method}-{first}.png";
            File.Copy(Path.Combine(experiment.Output, shown.Grid), Path.Combine(root, gridName), overwrite: true);
            md.Append(Invariant($"**{method}** ({ClassName(first)}, seed 0): ![{method}]({gridName})"));
            if (shown.Trajectory is { } gif && File.Exists(Path.Combine(experiment.Output, gif)))
            {
                File.Copy(Path.Combine(experiment.Output, gif), Path.Combine(root, $"grids/{method}-{first}.gif"), overwrite: true);
                md.Append(Invariant($" [trajectory](grids/{method}-{first}.gif)"));
            }
            md.AppendLine().AppendLine();
        }

        md.AppendLine(Invariant($"## Translation: {ClassName(o.TranslateFrom)} to {ClassName(o.TranslateTo)}"));
        md.AppendLine();
        md.AppendLine(Invariant($"Test images of {ClassName(o.TranslateFrom)} moved towards {ClassName(o.TranslateTo)}: ") +
            Invariant($"the bridge ({plan.TranslationSteps} steps, source \"degraded {ClassName(o.TranslateFrom)}\" ") +
            Invariant($"after step {plan.TranslationSteps / 2}, t capped at each value) against ") +
            Invariant($"SDEdit from the same ensemble ({plan.SdeditSteps} steps, guidance {plan.SdeditCfg}) at each strength. Realism: p(target); ") +
            Invariant($"faithfulness: SSIM to the input (1 is unchanged)."));
        md.AppendLine();
        md.AppendLine("| method | setting | p(target) ↑ | SSIM to input ↑ | RMSE to input |");
        md.AppendLine("|---|---|---|---|---|");
        var points = translations.GroupBy(t => (t.Method, t.Setting)).OrderBy(g => g.Key.Method, StringComparer.Ordinal).ThenBy(g
            => g.Key.Setting).ToList();
        foreach (var g in points)
            md.AppendLine(Invariant($"| {g.Key.Method} | {(g.Key.Method == "bridge" ? "t ≤ " : "strength ")}{g.Key.Setting:0.00} | ") +
                $"{DdmReport.Stat(g.Select(t => t.TargetProbability), "F3")} | {DdmReport.Stat(g.Select(t => t.Ssim), "F3")} | " +
                $"{DdmReport.Stat(g.Select(t => t.Rmse), "F3")} |");
        md.AppendLine();
        if (Plot(points.Select(g => (g.Key.Method, g.Key.Setting, g.Average(t => t.Ssim), g.Average(t => t.TargetProbability))).ToList(),
                Path.Combine(root, "translation.png")))
            md.AppendLine("![realism against faithfulness](translation.png)").AppendLine();
        foreach (var sentence in TranslationFindings(points.Select(g => (g.Key.Method, g.Key.Setting, g.Average(t => t.Ssim),
                     g.Average(t => t.TargetProbability))).ToList()))
            md.AppendLine("- " + sentence);
        md.AppendLine();
        foreach (var t in translations.Where(t => t.Seed == 0))
        {
            var name = $"grids/translate-{t.Method}-{t.Setting.ToString("0.00", CultureInfo.InvariantCulture)}.png";
            File.Copy(Path.Combine(experiment.Output, t.Grid), Path.Combine(root, name), overwrite: true);
            md.AppendLine(Invariant($"**{t.Method} {t.Setting:0.00}**: ![{t.Method}]({name})")).AppendLine();
        }
        var inputs = translations.FirstOrDefault(t => t.Method == "sdedit" && t.Seed == 0);
        if (inputs is not null && File.Exists(Path.Combine(experiment.Output, Path.GetDirectoryName(inputs.Grid)!, "inputs.png")))
        {
            File.Copy(Path.Combine(experiment.Output, Path.GetDirectoryName(inputs.Grid)!, "inputs.png"), Path.Combine(root,
                "grids/translate-inputs.png"),
                overwrite: true);
            md.AppendLine("**inputs**: ![inputs](grids/translate-inputs.png)").AppendLine();
        }
        var path = Path.Combine(root, "report.md");
        AtomicFile.WriteAllText(path, md.ToString());
        File.Copy(Path.Combine(experiment.Output, "plan.json"), Path.Combine(root, "plan.json"), overwrite: true);
        return path;
    }

    /// <summary>What the class-to-image table says about the bridge against SDS, in sentences computed from it.</summary>
    private static IEnumerable<string> Findings(IReadOnlyList<MethodOutcome> methods, List<ImageStats>? real,
        Func<string, Func<MethodOutcome, double>, double[]> perSeed)
    {
        if (!methods.Any(m => m.Method == "bridge") || !methods.Any(m => m.Method == "sds")) yield break;
        double Mean(string method, Func<MethodOutcome, double> metric) => perSeed(method, metric).DefaultIfEmpty(double.NaN).Average();
        var (bridgeFid, sdsFid) = (Mean("bridge", m => m.Fid), Mean("sds", m => m.Fid));
        var spread = Math.Max(DdmReport.StandardDeviation(perSeed("bridge", m => m.Fid)), DdmReport.StandardDeviation(perSeed("sds", m => m.Fid)));
        yield return Invariant($"FID: the bridge {(bridgeFid < sdsFid ? "beat" : "did not beat")} SDS ({bridgeFid:F1} against {sdsFid:F1}; ") +
            Invariant($"the larger seed-to-seed sd is {spread:F1}, so the gap is ") +
            Invariant($"{(Math.Abs(bridgeFid - sdsFid) > 2 * spread ? "beyond" : "within")} ") +
            "twice the spread).";
        if (real is not null)
        {
            var (realSat, realLap) = (real.Average(r => r.Saturation), real.Average(r => r.LaplacianVariance));
            var (bs, ss) = (Math.Abs(Mean("bridge", m => m.Saturation) - realSat), Math.Abs(Mean("sds", m => m.Saturation) - realSat));
            var (bl, sl) = (Math.Abs(Mean("bridge", m => m.LaplacianVariance) - realLap), Math.Abs(Mean("sds", m => m.LaplacianVariance) - realLap));
            yield return Invariant($"Saturation: the bridge's is {(bs < ss ? "closer to" : "further from")} the real images' than SDS's ") +
                Invariant($"({100 * bs:F1} against {100 * ss:F1} points away).");
            yield return Invariant($"Smoothness: the bridge's Laplacian variance is {(bl < sl ? "closer to" : "further from")} the real ") +
                Invariant($"images' than SDS's ({bl:F2} against {sl:F2} away).");
        }
        var (bridgeStep, sdsStep) = (Mean("bridge", m => m.SecondsPerStep), Mean("sds", m => m.SecondsPerStep));
        yield return Invariant($"Cost: a bridge step took {bridgeStep / sdsStep:F2}× an SDS step ") +
            Invariant($"({1000 * bridgeStep:F0} against {1000 * sdsStep:F0} ms), ") +
            "as both evaluate two rows per image.";
        var (bp, sp) = (Mean("bridge", m => m.TargetProbability), Mean("sds", m => m.TargetProbability));
        yield return Invariant($"Recognisability: p(class) {bp:F3} for the bridge, {sp:F3} for SDS, {Mean("nfsd", m => m.TargetProbability):F3} ") +
            Invariant($"for nfsd and {Mean("sampling", m => m.TargetProbability):F3} for sampling.");
    }

    private static IEnumerable<string> TranslationFindings(List<(string Method, double Setting, double Ssim, double P)> points)
    {
        var bridge = points.Where(p => p.Method == "bridge").ToList();
        var sdedit = points.Where(p => p.Method == "sdedit").ToList();
        if (bridge.Count == 0 || sdedit.Count == 0) yield break;
        // A bridge setting dominates an SDEdit strength when it is at least as faithful and at least as realistic.
        var dominated = sdedit.Where(s => bridge.Any(b => b.Ssim >= s.Ssim && b.P >= s.P)).Select(s => s.Setting.ToString("0.00",
            CultureInfo.InvariantCulture)).ToList();
        var dominating = bridge.Where(b => sdedit.Any(s => s.Ssim >= b.Ssim && s.P >= b.P)).Select(b => b.Setting.ToString("0.00",
            CultureInfo.InvariantCulture)).ToList();
        yield return dominated.Count > 0
            ? $"The bridge is at least as realistic and as faithful as SDEdit at strength {string.Join(", ", dominated)}."
            : "No bridge setting is both as realistic and as faithful as any SDEdit strength.";
        if (dominating.Count > 0)
            yield return $"SDEdit is at least as realistic and as faithful as the bridge at t ≤ {string.Join(", ", dominating)}.";
    }

    private static bool Plot(List<(string Method, double Setting, double Ssim, double P)> points, string path)
    {
        if (points.Count == 0) return false;
        var plt = new ScottPlot.Plot();
        foreach (var group in points.GroupBy(p => p.Method))
        {
            var ordered = group.OrderBy(p => p.Setting).ToList();
            var scatter = plt.Add.Scatter(ordered.Select(p => p.Ssim).ToArray(), ordered.Select(p => p.P).ToArray());
            scatter.LegendText = group.Key == "bridge" ? "bridge (t cap)" : "SDEdit (strength)";
            scatter.MarkerSize = 8;
            foreach (var p in ordered) plt.Add.Text(p.Setting.ToString("0.0", CultureInfo.InvariantCulture), p.Ssim, p.P);
        }
        plt.Title("Translation: realism against faithfulness (mean over seeds)");
        plt.XLabel("SSIM to the input (faithfulness)");
        plt.YLabel("p(target class) (realism)");
        plt.ShowLegend(ScottPlot.Alignment.LowerLeft);
        var temp = AtomicFile.TempSibling(Path.GetFullPath(path)) + ".png";
        plt.SavePng(temp, 800, 500);
        File.Move(temp, path, overwrite: true);
        return true;
    }
}
