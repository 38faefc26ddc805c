using System.CommandLine;

namespace Islands.Cli.Commands;

public static partial class BenchCommands
{
    private static Command Island(TextWriter stdout, TextWriter stderr)
    {
        var data = new Option<string>("--data") { Description = "Dataset directory", Required = true };
        var partitions = new Option<string?>("--partitions") { Description = "Partition file: train expert 0 (default: the monolith)" };
        var steps = new Option<int>("--steps") { Description = "Steps per throughput run", DefaultValueFactory = _ => 120 };
        var batch = new Option<int>("--batch") { DefaultValueFactory = _ => 64 };
        var every = new Option<int>("--checkpoint-every") { DefaultValueFactory = _ => 20 };
        var rounds = new Option<int>("--rounds") { Description = "Counted bare/island throughput pairs, in ABBA order, after one warm-up pair",
            DefaultValueFactory = _ => 3 };
        var kills = new Option<int>("--kills") { Description = "Hard kills of the training node in a 3-node island (0 skips)",
            DefaultValueFactory = _ => 3 };
        var stableAfter = new Option<string>("--stable-after") { Description = "Split-brain resolver stable-after (the production default is 20s)",
            DefaultValueFactory = _ => "20s" };
        var work = new Option<string?>("--work") { Description = "Working directory (default: a new temporary directory)" };
        var viewer = new Option<bool>("--viewer")
        {
            Description = "Instead: the live viewer's cost, a one-node island beside a serving node with a browser connected to its viewer " +
                "against none (rounds in ABBA order; no bare loop, no kills)",
        };
        var command = new Command("island", "Actor-hosted training against the bare loop, and failover time and steps lost when the training node " +
            "is killed")
        {
            data, partitions, steps, batch, every, rounds, kills, stableAfter, work, viewer,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, (ctx, parse, cancel) =>
        {
            if (parse.GetValue(rounds) < 1) throw new Diffusion.ConfigException("--rounds", $"{parse.GetValue(rounds)} must be at least 1");
            if (parse.GetValue(kills) < 0) throw new Diffusion.ConfigException("--kills", $"{parse.GetValue(kills)} must not be negative");
            IslandsCli.InitTorch(parse);
            var dataDir = Path.GetFullPath(parse.GetValue(data)!);
            var partitionFile = parse.GetValue(partitions) is { } p ? Path.GetFullPath(p) : null;
            var stable = Hosting.IslandNodeConfig.ParseDuration("--stable-after", parse.GetValue(stableAfter)!);
            string Config(long total) => System.Text.Json.JsonSerializer.Serialize(new
            {
                islands = new
                {
                    job = partitionFile is null ? "monolith" : "expert:0",
                    training = new Dictionary<string, object>
                    {
                        ["dataDirectory"] = dataDir, ["steps"] = total, ["batchSize"] = parse.GetValue(batch),
                        ["checkpointEvery"] = parse.GetValue(every), ["keepCheckpoints"] = 100_000,
                    }.Concat(partitionFile is null ? [] : [new("partitionsFile", partitionFile)]).ToDictionary(),
                },
            });
            var dir = parse.GetValue(work) ?? Path.Combine(Path.GetTempPath(), $"islands-bench-island-{Guid.NewGuid():N}");
            var postgres = Environment.GetEnvironmentVariable("ISLANDS_JOURNAL_CONNECTION_STRING");
            // Akka's shutdown messages ("Remoting shut down") bypass the host's logger and go to Console.Out; keep them off
            // stdout so that --json output stays parseable.
            var stdoutBefore = Console.Out;
            Console.SetOut(Console.Error);
            Hosting.Benchmarks.IslandBenchmarkResult result;
            if (parse.GetValue(viewer))
            {
                Hosting.Benchmarks.ViewerBenchmarkResult cost;
                try
                {
                    cost = Hosting.Benchmarks.ViewerBenchmark.Run(Config, parse.GetValue(steps), dir, parse.GetValue(rounds), stable, ctx.Log,
                        cancel);
                }
                finally
                {
                    Console.SetOut(stdoutBefore);
                }
                ctx.Result(cost, w =>
                {
                    w.WriteLine($"job {cost.Job}, batch {cost.Batch}, checkpoint every {cost.CheckpointEvery} steps, " +
                        $"viewer polling every {cost.PollSeconds:0.#} s");
                    w.WriteLine($"  no viewer:        {cost.WithoutViewerImagesPerSecond:F1} images/s");
                    w.WriteLine($"  viewer connected: {cost.WithViewerImagesPerSecond:F1} images/s ({cost.Messages} messages received)");
                    w.WriteLine($"  with / without:   {cost.WithOverWithout:F3} (viewer cost {(1 - cost.WithOverWithout):P1})");
                });
                return Task.FromResult(ExitCodes.Ok);
            }
            try
            {
                result = Hosting.Benchmarks.IslandBenchmark.Run(Config, parse.GetValue(steps), dir, parse.GetValue(rounds), parse.GetValue(kills),
                    stable, string.IsNullOrWhiteSpace(postgres) ? null : postgres, ctx.Log, cancel);
            }
            finally
            {
                Console.SetOut(stdoutBefore);
            }
            ctx.Result(result, w =>
            {
                w.WriteLine($"job {result.Job}, batch {result.Batch}, checkpoint every {result.CheckpointEvery} steps");
                w.WriteLine($"  bare loop:       {result.BareImagesPerSecond:F1} images/s");
                w.WriteLine($"  one-node island: {result.ActorImagesPerSecond:F1} images/s");
                w.WriteLine($"  island / bare:   {result.ActorOverBare:F3} (actor layer cost {(1 - result.ActorOverBare):P1})");
                if (result.Kills.Count > 0)
                {
                    w.WriteLine($"failover in a 3-node island ({result.Journal}, split-brain stable-after {result.StableAfterSeconds:F0} s):");
                    foreach (var k in result.Kills)
                        w.WriteLine($"  kill {k.Kill}: first new step {k.SecondsToFirstNewStep:F1} s after the kill; {k.StepsLost} steps lost " +
                            $"(killed at {k.StepAtKill}, resumed from {k.ResumedFromStep})");
                    w.WriteLine($"  mean {result.Kills.Average(k => k.SecondsToFirstNewStep):F1} s to the first new step; steps lost mean " +
                        $"{result.Kills.Average(k => k.StepsLost):F1}, max {result.Kills.Max(k => k.StepsLost)} (checkpoint interval " +
                        $"{result.CheckpointEvery})");
                }
            });
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }
}
