using System.CommandLine;
using System.Globalization;
using Islands.Cli.Experiments;

namespace Islands.Cli.Commands;

/// <summary><c>islands experiment ddm</c>: the paper's central claim, measured on this machine, resumable.</summary>
public static class ExperimentCommands
{
    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var command = new Command("experiment", "Reproducible experiments that write a report");
        command.Add(Ddm(stdout, stderr));
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
