using System.CommandLine;
using Islands.Diffusion.Benchmarks;

namespace Islands.Cli.Commands;

public static partial class BenchCommands
{
    private static Command Distill(TextWriter stdout, TextWriter stderr)
    {
        var store = new Option<string>("--store") { Description = "Checkpoint store with published experts and a router", Required = true };
        var count = new Option<int>("--count") { Description = "Images per step", DefaultValueFactory = _ => 16 };
        var steps = new Option<int>("--steps") { Description = "Steps of each kind per round", DefaultValueFactory = _ => 20 };
        var rounds = new Option<int>("--rounds") { DefaultValueFactory = _ => 5 };
        var strategy = new Option<string>("--strategy") { DefaultValueFactory = _ => "top1" };
        var command = new Command("distill", "Steps/s of score distillation (sds, the bridge's calibrated stage) against one guided sampling step " +
            "of the same ensemble, alternating in rounds")
        {
            store, count, steps, rounds, strategy,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, (ctx, parse, cancel) =>
        {
            if (parse.GetValue(count) < 1 || parse.GetValue(steps) < 1 || parse.GetValue(rounds) < 1)
                throw new Diffusion.ConfigException("--count", "--count, --steps and --rounds must be at least 1");
            IslandsCli.InitTorch(parse);
            var result = DistillBenchmark.Run(Path.GetFullPath(parse.GetValue(store)!), parse.GetValue(count), parse.GetValue(steps),
                parse.GetValue(rounds), parse.GetValue(strategy)!, ctx.Log);
            ctx.Result(result, w =>
            {
                w.WriteLine($"{result.Count} images, {result.Strategy}: guided sampling {result.SamplingStepsPerSecond:F1} steps/s, sds " +
                    $"{result.SdsStepsPerSecond:F1} steps/s, bridge {result.BridgeStepsPerSecond:F1} steps/s");
                w.WriteLine($"median per round: sds / sampling step {result.MedianSdsOverSampling:F2}, bridge / sds {result.MedianBridgeOverSds:F2}");
            });
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }
}
