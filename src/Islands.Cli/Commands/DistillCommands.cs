using System.CommandLine;
using System.Globalization;
using Islands.Diffusion;
using Islands.Diffusion.Distillation;
using Islands.Diffusion.Serving;

namespace Islands.Cli.Commands;

/// <summary><c>islands distill class</c>: images optimised towards a class with the islands' ensemble as the prior.</summary>
public static class DistillCommands
{
    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var distill = new Command("distill", "Score distillation with the islands' ensemble as the prior (sds, nfsd, bridge)");
        distill.Add(Class(stdout, stderr));
        return distill;
    }

    private static Command Class(TextWriter stdout, TextWriter stderr)
    {
        var defaults = new DistillConfig();
        var store = new Option<string>("--store") { Description = "Checkpoint store with published experts and a router", Required = true };
        var cls = new Option<string>("--class") { Description = "Target class, by index or name", Required = true };
        var mode = new Option<string>("--mode") { Description = "sds, nfsd or bridge", DefaultValueFactory = _ => "sds" };
        mode.AcceptOnlyFromAmong(DistillConfig.Modes);
        var source = new Option<string?>("--source-class")
        {
            Description = "The source's class, by index or name (default: the target class): nfsd's negative, the bridge's source after " +
                "--switch-step; \"degraded, class\" unless --plain-source",
        };
        var plain = new Option<bool>("--plain-source")
        {
            Description = "Use the plain source class rather than its degraded condition (for experts trained without --degraded-condition)",
        };
        var count = new Option<int>("--count") { Description = "Images optimised together", DefaultValueFactory = _ => 16 };
        var steps = new Option<int>("--steps") { DefaultValueFactory = _ => defaults.Steps };
        var switchStep = new Option<int?>("--switch-step") { Description = "The bridge's switch from SDS to its calibrated source (default steps/2)" };
        var guidance = new Option<double>("--guidance") { Description = "Classifier-free guidance scale", DefaultValueFactory = _ => defaults.Guidance };
        var lr = new Option<double>("--lr") { Description = "AdamW learning rate on the pixels", DefaultValueFactory = _ => defaults.LearningRate };
        var tMin = new Option<double>("--t-min") { DefaultValueFactory = _ => defaults.TMin };
        var tMax = new Option<double>("--t-max") { DefaultValueFactory = _ => defaults.TMax };
        var strategy = new Option<string>("--strategy") { Description = "Routing strategy of the ensemble", DefaultValueFactory = _ => defaults.Strategy };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 0 };
        var every = new Option<int>("--checkpoint-every") { DefaultValueFactory = _ => defaults.CheckpointEvery };
        var output = new Option<string>("--out") { Description = "Run directory (rerunning with the same --out resumes)", Required = true };
        var command = new Command("class", "Optimise a batch of free images towards a class; writes grid.png and summary.json into --out")
        {
            store, cls, mode, source, plain, count, steps, switchStep, guidance, lr, tMin, tMax, strategy, seed, every, output,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, async (ctx, parse, cancel) =>
        {
            var storePath = Path.GetFullPath(parse.GetValue(store)!);
            var names = ClassNames(storePath);
            var config = new DistillConfig(Job: parse.GetValue(mode)!, Store: storePath, TargetClass: ResolveClass("--class", parse.GetValue(cls)!, names),
                SourceClass: parse.GetValue(source) is { } s ? ResolveClass("--source-class", s, names) : null, Count: parse.GetValue(count),
                Steps: parse.GetValue(steps), SwitchStep: parse.GetValue(switchStep) ?? parse.GetValue(steps) / 2, Guidance: parse.GetValue(guidance),
                TMin: parse.GetValue(tMin), TMax: parse.GetValue(tMax), LearningRate: parse.GetValue(lr), Strategy: parse.GetValue(strategy)!,
                Seed: parse.GetValue(seed), CheckpointEvery: parse.GetValue(every), DegradedSource: !parse.GetValue(plain));
            config.ThrowIfInvalid();
            IslandsCli.InitTorch(parse);
            var reporter = new ProgressReporter(ctx, $"distill {config.Job} class {config.TargetClass}");
            var summary = await reporter.RunAsync(config.Steps, report => Task.Run(() => DistillationRun.Execute(config,
                Path.GetFullPath(parse.GetValue(output)!), p => report(p.Step, $"|direction|² {p.Loss:F4}"), ctx.Log, cancel)));
            ctx.Result(summary, w =>
            {
                w.WriteLine($"{summary.Method}: {summary.Step}/{summary.TotalSteps} steps towards class {summary.TargetClass}" +
                    $"{(summary.Method == "sds" ? "" : $" from {(summary.DegradedSource ? "degraded " : "")}{summary.SourceClass ?? summary.TargetClass}")}, " +
                    $"{summary.SecondsPerStep * 1000:F0} ms a step; grid {summary.Grid}");
                w.WriteLine($"  saturation {summary.Distilled.Saturation:P2}, Laplacian variance {summary.Distilled.LaplacianVariance:F4}" +
                    (summary.Real is { } r ? $" (real images of the class: {r.Saturation:P2}, {r.LaplacianVariance:F4})" : ""));
            });
            return summary.Completed ? ExitCodes.Ok : ExitCodes.Cancelled;
        }));
        return command;
    }

    private static IReadOnlyList<string> ClassNames(string store)
    {
        var expert = PublishedModels.Scan(store).Experts.FirstOrDefault()
            ?? throw new ConfigException("--store", $"{store}: no published expert");
        var (count, names) = ServedModels.Classes(expert);
        return names.Count == count ? names : [.. Enumerable.Range(0, count).Select(i => i.ToString(CultureInfo.InvariantCulture))];
    }

    private static int ResolveClass(string option, string value, IReadOnlyList<string> names)
    {
        if (int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var index))
            return index < names.Count ? index : throw new ConfigException(option, $"{index} is outside 0..{names.Count - 1}");
        var match = names.Select((n, i) => (n, i)).FirstOrDefault(x => string.Equals(x.n, value, StringComparison.OrdinalIgnoreCase));
        return match.n is not null ? match.i : throw new ConfigException(option, $"'{value}' is not a class ({string.Join(", ", names)})");
    }
}
