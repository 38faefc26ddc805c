using System.CommandLine;
using System.Globalization;
using Islands.Diffusion;
using Islands.Diffusion.Distillation;
using Islands.Diffusion.Serving;

namespace Islands.Cli.Commands;

/// <summary>
/// <c>islands distill class|translate|illusion</c>: images optimised with the islands' ensemble as the prior. Every
/// run freezes its config in --out, checkpoints its images, resumes when rerun, and writes grid.png and summary.json.
/// </summary>
public static partial class DistillCommands
{
    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var distill = new Command("distill", "Score distillation with the islands' ensemble as the prior (sds, nfsd, bridge)");
        distill.Add(Task(stdout, stderr, "class", "Optimise a batch of free images towards a class"));
        distill.Add(Task(stdout, stderr, "translate",
            "Move real test images of one class to another (t capped to keep their structure), compared with SDEdit at several strengths"));
        distill.Add(Task(stdout, stderr, "illusion", "Optimise images that read as one class upright and as another turned 180°"));
        return distill;
    }

    private static Command Task(TextWriter stdout, TextWriter stderr, string task, string description)
    {
        var defaults = new DistillConfig();
        var store = new Option<string?>("--store") { Description = "Checkpoint store with published experts and a router (or --url)" };
        var url = new Option<string?>("--url")
        {
            Description = $"Run it as a job of a serving cluster instead (any node, e.g. http://127.0.0.1:8080; the API key comes from " +
                $"{ServingCommands.ApiKeyVariable}); rerunning with the same --out follows the same job",
        };
        var target = new Option<string>(task == "translate" ? "--to" : "--class")
        {
            Description = task == "illusion" ? "The class seen upright, by index or name" : "Target class, by index or name", Required = true,
        };
        var input = new Option<string>("--from")
        {
            Description = "The class of the input images (their test split), by index or name", Required = true,
        };
        var turned = new Option<string>("--turned") { Description = "The class seen turned 180°, by index or name", Required = true };
        var mode = new Option<string>("--mode") { Description = "sds, nfsd or bridge", DefaultValueFactory = _ => "sds" };
        mode.AcceptOnlyFromAmong(DistillConfig.Modes);
        var source = new Option<string?>("--source-class")
        {
            Description = "The source's class, by index or name (default: the input class for translate, else the target): nfsd's negative, " +
                "the bridge's source after --switch-step; \"degraded, class\" unless --plain-source",
        };
        var plain = new Option<bool>("--plain-source")
        {
            Description = "Use the plain source class rather than its degraded condition (for experts trained without --degraded-condition)",
        };
        var count = new Option<int>("--count") { Description = "Images optimised together", DefaultValueFactory = _ => task == "class" ? 16 : 8 };
        var steps = new Option<int>("--steps") { DefaultValueFactory = _ => defaults.Steps };
        var switchStep = new Option<int?>("--switch-step")
        {
            Description = "The bridge's switch from SDS to its calibrated source (default steps/2)",
        };
        var guidance = new Option<double>("--guidance")
        {
            Description = "Classifier-free guidance scale", DefaultValueFactory = _ => defaults.Guidance,
        };
        var lr = new Option<double>("--lr") { Description = "AdamW learning rate on the pixels", DefaultValueFactory = _ => defaults.LearningRate };
        var tMin = new Option<double>("--t-min") { DefaultValueFactory = _ => defaults.TMin };
        var tMax = new Option<double>("--t-max")
        {
            Description = "Largest t drawn (a translation keeps more of its input with a lower cap)",
            DefaultValueFactory = _ => task == "translate" ? 0.5 : defaults.TMax,
        };
        var strategy = new Option<string>("--strategy")
        {
            Description = "Routing strategy of the ensemble", DefaultValueFactory = _ => defaults.Strategy,
        };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 0 };
        var every = new Option<int>("--checkpoint-every") { DefaultValueFactory = _ => defaults.CheckpointEvery };
        var sdedit = new Option<string>("--sdedit")
        {
            Description = "SDEdit strengths to compare with (comma-separated; empty for none)", DefaultValueFactory = _ => "0.3,0.5,0.7",
        };
        var sdeditGuidance = new Option<double>("--sdedit-guidance") { Description = "SDEdit's guidance scale", DefaultValueFactory = _ => 3 };
        var noEvaluate = new Option<bool>("--no-evaluate") { Description = "Skip the classifier scores (the classifier trains once per dataset)" };
        var evaluatorEpochs = new Option<int>("--evaluator-epochs")
        {
            Description = "Epochs of the scoring classifier (trained once per dataset and setting, cached)", DefaultValueFactory = _ => 3,
        };
        var evaluatorImages = new Option<int?>("--evaluator-images") { Description = "Training images of the scoring classifier (default: all)" };
        var output = new Option<string>("--out") { Description = "Run directory (rerunning with the same --out resumes)", Required = true };
        var command = new Command(task, description + "; writes grid.png and summary.json into --out")
        {
            store, url, target, mode, source, plain, count, steps, switchStep, guidance, lr, tMin, tMax, strategy, seed, every, noEvaluate, evaluatorEpochs, evaluatorImages,
            output,
        };
        if (task == "translate") { command.Add(input); command.Add(sdedit); command.Add(sdeditGuidance); }
        if (task == "illusion") command.Add(turned);
        command.SetAction(IslandsCli.Action(stdout, stderr, async (ctx, parse, cancel) =>
        {
            if ((parse.GetValue(store) is null) == (parse.GetValue(url) is null))
                throw new ConfigException("--store", "give either --store (distil here) or --url (a job of a serving cluster)");
            if (parse.GetValue(url) is { } address)
            {
                var body = new Dictionary<string, object?>
                {
                    ["task"] = task, ["mode"] = parse.GetValue(mode), ["class"] = ClassValue(parse.GetValue(target)),
                    ["sourceClass"] = ClassValue(parse.GetValue(source)), ["degradedSource"] = !parse.GetValue(plain),
                    ["count"] = parse.GetValue(count), ["steps"] = parse.GetValue(steps), ["switchStep"] = parse.GetValue(switchStep),
                    ["guidance"] = parse.GetValue(guidance), ["learningRate"] = parse.GetValue(lr), ["tMin"] = parse.GetValue(tMin),
                    ["tMax"] = parse.GetValue(tMax), ["strategy"] = parse.GetValue(strategy), ["seed"] = parse.GetValue(seed),
                    ["checkpointEvery"] = parse.GetValue(every), ["evaluate"] = !parse.GetValue(noEvaluate),
                };
                if (task == "translate")
                {
                    body["from"] = ClassValue(parse.GetValue(input));
                    body["sdedit"] = Strengths(parse.GetValue(sdedit)!);
                    body["sdeditGuidance"] = parse.GetValue(sdeditGuidance);
                }
                if (task == "illusion") body["turned"] = ClassValue(parse.GetValue(turned));
                return await RemoteAsync(ctx, address, body, Path.GetFullPath(parse.GetValue(output)!),
                    $"distill {task} ({parse.GetValue(mode)})", cancel);
            }
            var storePath = Path.GetFullPath(parse.GetValue(store)!);
            var names = ClassNames(storePath);
            var targetOption = task == "translate" ? "--to" : "--class";
            int? inputClass = task == "translate" ? ResolveClass("--from", parse.GetValue(input)!, names) : null;
            var config = new DistillConfig(Job: parse.GetValue(mode)!, Store: storePath, Task: task,
                TargetClass: ResolveClass(targetOption, parse.GetValue(target)!, names),
                SourceClass: parse.GetValue(source) is { } s ? ResolveClass("--source-class", s, names) : null, InputClass: inputClass,
                Count: parse.GetValue(count), Steps: parse.GetValue(steps),
                SwitchStep: parse.GetValue(switchStep) ?? FrozenSwitchStep(parse.GetValue(output)!) ?? parse.GetValue(steps) / 2,
                Guidance: parse.GetValue(guidance),
                TMin: parse.GetValue(tMin), TMax: parse.GetValue(tMax), LearningRate: parse.GetValue(lr), Strategy: parse.GetValue(strategy)!,
                Seed: parse.GetValue(seed), CheckpointEvery: parse.GetValue(every), DegradedSource: !parse.GetValue(plain),
                IllusionClass: task == "illusion" ? ResolveClass("--turned", parse.GetValue(turned)!, names) : null);
            config.ThrowIfInvalid();
            var strengths = task == "translate" ? Strengths(parse.GetValue(sdedit)!) : [];
            IslandsCli.InitTorch(parse);
            var reporter = new ProgressReporter(ctx, $"distill {task} ({config.Job})");
            var summary = await reporter.RunAsync(config.Steps, report => System.Threading.Tasks.Task.Run(() => DistillationRun.Execute(config,
                Path.GetFullPath(parse.GetValue(output)!), p => report(p.Step, $"|direction|² {p.Loss:F4}"), ctx.Log, cancel,
                new DistillationOptions
                {
                    Evaluate = !parse.GetValue(noEvaluate), SdeditStrengths = strengths, EvaluatorEpochs = parse.GetValue(evaluatorEpochs),
                    EvaluatorImages = parse.GetValue(evaluatorImages),
                    SdeditGuidance = task == "translate" ? parse.GetValue(sdeditGuidance) : 3,
                })));
            ctx.Result(summary, w => Describe(w, summary, names));
            return summary.Completed ? ExitCodes.Ok : ExitCodes.Cancelled;
        }));
        return command;
    }

    private static object? ClassValue(string? value) =>
        value is null ? null : int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var index) ? index : value;

    private static void Describe(TextWriter w, DistillationSummary s, IReadOnlyList<string>? known)
    {
        var names = known ?? [.. Enumerable.Range(0, 1 + new[] { s.TargetClass, s.SourceClass ?? 0, s.InputClass ?? 0 }.Max())
            .Select(i => i.ToString(CultureInfo.InvariantCulture))];
        var sourceClass = names[s.SourceClass ?? s.InputClass ?? s.TargetClass];
        var source = s.Method == "sds" ? "" : $", source {(s.DegradedSource ? "degraded " : "")}{sourceClass}";
        w.WriteLine($"{s.Task} ({s.Method}{source}): {s.Step}/{s.TotalSteps} steps towards {names[s.TargetClass]}, {s.SecondsPerStep * 1000:F0} ms " +
            $"a step; grid {s.Grid}");
        w.WriteLine($"  saturation {s.Distilled.Saturation:P2}, Laplacian variance {s.Distilled.LaplacianVariance:F4}" +
            (s.Real is { } r ? $" (real images of the class: {r.Saturation:P2}, {r.LaplacianVariance:F4})" : ""));
        if (s.Scores is { } c)
            w.WriteLine($"  classifier: p({names[s.TargetClass]}) {c.TargetProbability:F3}" +
                (c.TurnedProbability is { } p ? $", turned p {p:F3}" : "") + $"; FID {c.Fid:F2}, KID {c.Kid:F4} against the test split");
        foreach (var f in s.Translation)
            w.WriteLine($"  {f.Method}{(f.Strength is { } st ? $" {st:F2}" : "")}: RMSE {f.Rmse:F3}, SSIM {f.Ssim:F3}" +
                (f.TargetProbability is { } tp ? $", p(target) {tp:F3}" : "") + $"; {f.Grid}");
    }

    /// <summary>A resumed bridge keeps the switch it was started with unless --switch-step says otherwise (--steps may grow).</summary>
    private static int? FrozenSwitchStep(string runDirectory)
    {
        var path = Path.Combine(runDirectory, Diffusion.Training.RunDirectory.ConfigFile);
        return File.Exists(path) ? Diffusion.IO.Json.Read<DistillConfig>(path).SwitchStep : null;
    }

    private static double[] Strengths(string text)
    {
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return [.. parts.Select(p => double.TryParse(p, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && v is > 0 and <= 1 ? v
            : throw new ConfigException("--sdedit", $"'{p}' must be a strength in (0, 1]"))];
    }

    internal static IReadOnlyList<string> ClassNames(string store)
    {
        var expert = PublishedModels.Scan(store).Experts.FirstOrDefault()
            ?? throw new ConfigException("--store", $"{store}: no published expert");
        var (count, names) = ServedModels.Classes(expert);
        return names.Count == count ? names : [.. Enumerable.Range(0, count).Select(i => i.ToString(CultureInfo.InvariantCulture))];
    }

    internal static int ResolveClass(string option, string value, IReadOnlyList<string> names)
    {
        if (int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var index))
            return index < names.Count ? index : throw new ConfigException(option, $"{index} is outside 0..{names.Count - 1}");
        var match = names.Select((n, i) => (n, i)).FirstOrDefault(x => string.Equals(x.n, value, StringComparison.OrdinalIgnoreCase));
        return match.n is not null ? match.i : throw new ConfigException(option, $"'{value}' is not a class ({string.Join(", ", names)})");
    }
}
