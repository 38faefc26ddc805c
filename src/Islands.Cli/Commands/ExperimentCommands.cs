using System.CommandLine;
using System.Globalization;
using Islands.Cli.Experiments;

namespace Islands.Cli.Commands;

/// <summary><c>islands experiment ddm</c> and <c>sds-bridge</c>: the papers' claims, measured on this machine, resumable.</summary>
public static class ExperimentCommands
{
    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var command = new Command("experiment", "Reproducible experiments that write a report");
        command.Add(Ddm(stdout, stderr));
        command.Add(SdsBridge(stdout, stderr));
        return command;
    }

    private static Command SdsBridge(TextWriter stdout, TextWriter stderr)
    {
        var store = new Option<string>("--store")
        {
            Description = "Checkpoint store whose experts learned the degraded condition (islands demo --degraded-condition makes one)",
            Required = true,
        };
        var classes = new Option<string>("--classes") { Description = "Target classes (comma-separated indices or names)",
            DefaultValueFactory = _ => "Trouser,Sneaker,Bag" };
        var seeds = new Option<int>("--seeds") { Description = "Independent repetitions; tables show mean ± sd", DefaultValueFactory = _ => 3 };
        var count = new Option<int>("--count") { Description = "Images per class and seed", DefaultValueFactory = _ => 16 };
        var steps = new Option<int>("--steps") { Description = "Distillation steps (translations take 3/5 of them)", DefaultValueFactory = _ => 500 };
        var guidance = new Option<double>("--guidance") { Description = "Distillation guidance scale", DefaultValueFactory = _ => 40 };
        var translate = new Option<string>("--translate") { Description = "Translation FROM:TO (class indices or names)",
            DefaultValueFactory = _ => "Sandal:Sneaker" };
        var output = new Option<string>("--out") { Description = "Experiment directory (rerunning with the same options resumes)",
            DefaultValueFactory = _ => "runs/sds-bridge" };
        var quick = new Option<bool>("--quick")
        {
            Description = "One class, 2 seeds, 4 images, 20 steps, one translation setting: the whole pipeline in minutes (numbers mean nothing)",
        };
        var command = new Command("sds-bridge", "Sampling against sds, nfsd and the bridge with the ensemble as the prior, and translation against " +
            "SDEdit; writes report/report.md")
        {
            store, classes, seeds, count, steps, guidance, translate, output, quick,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, async (ctx, parse, cancel) =>
        {
            var isQuick = parse.GetValue(quick);
            int Pick(Option<int> option, int fast) => isQuick && parse.GetResult(option) is not { Implicit: false } ? fast : parse.GetValue(option);
            var storePath = Path.GetFullPath(parse.GetValue(store)!);
            var names = DistillCommands.ClassNames(storePath);
            var targets = parse.GetValue(classes)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(c => DistillCommands.ResolveClass("--classes", c, names)).ToArray();
            if (isQuick && parse.GetResult(classes) is not { Implicit: false }) targets = targets[..1];
            var pair = parse.GetValue(translate)!.Split(':');
            if (pair.Length != 2) throw new Diffusion.ConfigException("--translate", $"'{parse.GetValue(translate)}' must be FROM:TO");
            var options = new SdsBridgeOptions(storePath, targets, Pick(seeds, 2), Pick(count, 4), Pick(steps, 20), parse.GetValue(guidance),
                DistillCommands.ResolveClass("--translate", pair[0], names), DistillCommands.ResolveClass("--translate", pair[1], names), isQuick);
            Diffusion.ConfigException.ThrowFirst(options.Validate());
            IslandsCli.InitTorch(parse);
            var experiment = new SdsBridgeExperiment(parse.GetValue(output)!, ctx.Log);
            var commandLine = "islands " +
                string.Join(' ', parse.Tokens.Select(t => t.Value.Contains(' ', StringComparison.Ordinal) ? $"\"{t.Value}\"" : t.Value));
            var plan = await Task.Run(() => experiment.Prepare(options, commandLine), cancel);
            var reporter = new ProgressReporter(ctx, "experiment sds-bridge");
            await reporter.RunAsync(100, report => Task.Run(() =>
            {
                experiment.Run(plan, (done, total, unit) => report(100.0 * done / Math.Max(1, total), unit), cancel);
                return 0;
            }, cancel));
            var reportPath = SdsBridgeReport.Write(experiment, plan);
            ctx.Result(new { report = reportPath, directory = experiment.Output, units = experiment.MethodOutcomes().Count
                + experiment.TranslationOutcomes().Count },
                w => w.WriteLine($"wrote {reportPath}"));
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command Ddm(TextWriter stdout, TextWriter stderr)
    {
        var k = new Option<int>("--k") { Description = "Experts in the main comparison (the ablation also trains K=2, 4 and 8)",
            DefaultValueFactory = _ => 4 };
        var budget = new Option<double>("--budget-minutes")
        {
            Description = "Wall-clock budget (3 with --quick); the training steps are planned from it and the speed measured on this machine",
            DefaultValueFactory = _ => 120
        };
        var seeds = new Option<int>("--seeds") { Description = "Independent repetitions (partitions, training, sampling); tables show mean ± sd",
            DefaultValueFactory = _ => 2 };
        var data = new Option<string>("--data") { Description = "Dataset directory (imported from Fashion-MNIST when empty)",
            DefaultValueFactory = _ => "data/fm" };
        var output = new Option<string>("--out") { Description = "Experiment directory (rerunning with the same options resumes)",
            DefaultValueFactory = _ => "runs/ddm" };
        var quick = new Option<bool>("--quick")
        {
            Description = "Tiny models and sample counts: the whole pipeline in a few minutes (numbers mean nothing)"
        };
        var ddm = new Command("ddm", "Monolith against K isolated experts at equal training compute: FID along training, ablations, failure " +
            "cost, report")
        {
            k, budget, seeds, data, output, quick,
        };
        ddm.SetAction(IslandsCli.Action(stdout, stderr, async (ctx, parse, cancel) =>
        {
            var isQuick = parse.GetValue(quick);
            var minutes = parse.GetResult(budget) is { Implicit: false } ? parse.GetValue(budget) : isQuick ? 3 : parse.GetValue(budget);
            var options = new DdmExperimentOptions(parse.GetValue(data)!, parse.GetValue(k), minutes, parse.GetValue(seeds), isQuick);
            Diffusion.ConfigException.ThrowFirst(options.Validate());
            IslandsCli.InitTorch(parse);
            var experiment = new DdmExperiment(parse.GetValue(output)!, ctx.Log);
            var commandLine = "islands " +
                string.Join(' ', parse.Tokens.Select(t => t.Value.Contains(' ', StringComparison.Ordinal) ? $"\"{t.Value}\"" : t.Value));
            var plan = await Task.Run(() => experiment.Prepare(options, commandLine), cancel);
            var reporter = new ProgressReporter(ctx, "experiment ddm");
            var estimate = plan.EstimatedMinutes * 60;
            await reporter.RunAsync(100, report => Task.Run(() =>
            {
                experiment.Run(plan, (done, total, status) => report(100 * done / Math.Max(1e-9, total), status), cancel);
                return 0;
            }, cancel));
            var reportPath = DdmReport.Write(experiment, plan);
            ctx.Result(new { report = reportPath, directory = experiment.Output, plan.Steps, plan.EstimatedMinutes }, w =>
                w.WriteLine(string.Create(CultureInfo.InvariantCulture, $"wrote {reportPath} ({plan.Steps} training steps per run; planned " +
                    $"{estimate / 60:F0} minutes)")));
            return ExitCodes.Ok;
        }));
        return ddm;
    }
}
