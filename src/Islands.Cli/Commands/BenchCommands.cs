using System.CommandLine;
using Islands.Diffusion.Benchmarks;
using Islands.Diffusion.Configs;
using Islands.Diffusion.Sampling;

namespace Islands.Cli.Commands;

public static partial class BenchCommands
{
    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var bench = new Command("bench", "Measure training and sampling speed against this machine's limits");
        bench.Add(Serve(stdout, stderr));
        bench.Add(Train(stdout, stderr));
        bench.Add(Sample(stdout, stderr));
        bench.Add(Distill(stdout, stderr));
        bench.Add(Island(stdout, stderr));
        bench.Add(Ops(stdout, stderr));
        return bench;
    }

    /// <summary>The named kernel paths, each self-tested on this CPU first (a speed measured on a wrong kernel does not count).</summary>
    private static IReadOnlyList<Diffusion.Numerics.NumericsPolicy> VerifiedPaths(string list)
    {
        var report = Diffusion.Numerics.NumericsPolicy.Report;
        var named = Diffusion.Numerics.NumericsPolicy.Parse(list, "--paths").Select(p => p.Name == report.Chosen.Name ? report.Chosen : p).ToList();
        foreach (var p in named)
        {
            // A path the start-up self-test never reached (it stops at the first that passes) is tested here.
            var checks = report.Checks.Any(c => c.Policy == p.Name) ? report.Checks : Diffusion.Numerics.NumericsSelfTest.Run(candidates: [p]).Checks;
            var failed = checks.Where(c => c.Policy == p.Name && !c.Passed).Select(c => $"{c.Check} {c.Precision}").ToList();
            if (failed.Count > 0)
                throw new Diffusion.ConfigException("--paths",
                    $"'{p.Name}' computes wrong results on this CPU ({string.Join(", ", failed.Take(3))}); timing it would not count");
        }
        return named;
    }

    private static Command Ops(TextWriter stdout, TextWriter stderr)
    {
        var batch = new Option<int>("--batch") { DefaultValueFactory = _ => 128 };
        var steps = new Option<int>("--steps") { Description = "Profiled training steps per precision and path", DefaultValueFactory = _ => 6 };
        var precision = new Option<string>("--precision") { Description = "fp32, bf16, or both", DefaultValueFactory = _ => "both" };
        precision.AcceptOnlyFromAmong("fp32", "bf16", "both");
        var paths = new Option<string?>("--paths")
        {
            Description = "Kernel paths to compare, comma-separated (default: the one the self-test chose); each must have passed this CPU's " +
                "self-test",
        };
        var opSeconds = new Option<double>("--op-seconds") { Description = "Seconds of timing per operation, path and measurement",
            DefaultValueFactory = _ => 0.15 };
        var command = new Command("ops", "Per-operation times of a training step (each convolution, GroupNorm, SiLU, linear, forward and backward) " +
            "beside the whole step's phases")
        {
            batch, steps, precision, paths, opSeconds,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, (ctx, parse, _) =>
        {
            IslandsCli.InitTorch(parse);
            if (parse.GetValue(batch) < 1) throw new Diffusion.ConfigException("--batch", $"{parse.GetValue(batch)} must be at least 1");
            if (parse.GetValue(steps) < 1) throw new Diffusion.ConfigException("--steps", $"{parse.GetValue(steps)} must be at least 1");
            if (parse.GetValue(opSeconds) is not (> 0 and <= 60))
                throw new Diffusion.ConfigException("--op-seconds", $"{parse.GetValue(opSeconds)} must lie in (0, 60]");
            var report = Diffusion.Numerics.NumericsPolicy.Report;
            var chosen = parse.GetValue(paths) is { } list ? VerifiedPaths(list) : [report.Chosen];
            var which = parse.GetValue(precision) == "both" ? new[] { "fp32", "bf16" } : [parse.GetValue(precision)!];
            var results = which.SelectMany(pr => OpBenchmark.Run(new ModelConfig(), parse.GetValue(batch), pr, chosen, parse.GetValue(steps),
                parse.GetValue(opSeconds))).ToList();
            ctx.Result(new { cpu = report.Cpu, results }, w =>
            {
                w.WriteLine(IslandsCli.NumericsLine());
                foreach (var r in results)
                {
                    w.WriteLine($"{r.Precision} on {r.Path}, batch {r.Batch}, {r.Threads} threads: step {r.StepMs:F1} ms = " +
                        $"{r.ImagesPerSecond:F1} images/s");
                    w.WriteLine("  operation  shape                         per step  forward ms  backward ms  ms per step  share");
                    foreach (var o in r.Ops.OrderByDescending(o => o.StepMs))
                        w.WriteLine($"  {o.Operation,-10} {o.Shape,-30} {o.PerStep,8} {o.ForwardMs,11:F2} {o.BackwardMs,12:F2} {o.StepMs,12:F1} " +
                            $"{o.StepMs / r.StepMs,6:P1}");
                    w.WriteLine($"  listed operations together: {r.Ops.Sum(o => o.StepMs):F1} ms; the rest of forward and backward (adds, cat, " +
                        $"upsampling, loss, autograd): {r.UnlistedForwardBackwardMs:F1} ms");
                    w.WriteLine("  phases of the real step:");
                    foreach (var p in r.Phases) w.WriteLine($"    {p.Phase,-38} {p.Milliseconds,8:F1} ms {p.Milliseconds / r.StepMs,7:P1}");
                    w.WriteLine($"  one .NET-to-native call: {r.NativeCallMicroseconds:F2} us; {r.ParameterTensors} parameter tensors");
                }
                if (chosen.Count < 2) return;
                w.WriteLine($"paths compared in alternation (ms per step; ratio to {chosen[0].Name}):");
                foreach (var group in results.GroupBy(r => r.Precision))
                {
                    var first = group.First();
                    foreach (var r in group.Skip(1))
                    {
                        w.WriteLine($"  {r.Precision} {r.Path}: step {r.StepMs:F1} vs {first.StepMs:F1} -> {r.StepMs / first.StepMs:F2}x");
                        foreach (var kind in r.Ops.GroupBy(o => o.Operation))
                        {
                            var mine = kind.Sum(o => o.StepMs);
                            var theirs = first.Ops.Where(o => o.Operation == kind.Key).Sum(o => o.StepMs);
                            w.WriteLine($"    {kind.Key,-10} {mine,8:F1} vs {theirs,8:F1} -> {mine / theirs:F2}x");
                        }
                    }
                }
            });
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }

    private static Command Train(TextWriter stdout, TextWriter stderr)
    {
        var batch = new Option<int>("--batch") { DefaultValueFactory = _ => 128 };
        var steps = new Option<int>("--steps") { Description = "Timed steps", DefaultValueFactory = _ => 30 };
        var warmup = new Option<int>("--warmup") { DefaultValueFactory = _ => 5 };
        var precision = new Option<string>("--precision") { Description = "fp32, bf16, or both (measured in one run, with their ratio)",
            DefaultValueFactory = _ => "both" };
        precision.AcceptOnlyFromAmong("fp32", "bf16", "both");
        var command = new Command("train", "Training images/s of the default expert, its counted FLOPs, and the fraction of this CPU's matmul peak")
        {
            batch, steps, warmup, precision
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, (ctx, parse, _) =>
        {
            IslandsCli.InitTorch(parse);
            var which = parse.GetValue(precision) == "both" ? new[] { "fp32", "bf16" } : [parse.GetValue(precision)!];
            var results = which.Select(p => TrainBenchmark.Run(new ModelConfig(), parse.GetValue(batch), parse.GetValue(steps),
                parse.GetValue(warmup), p)).ToList();
            var ratio = results.Count == 2 ? results[1].ImagesPerSecond / results[0].ImagesPerSecond : (double?)null;
            ctx.Result(new { results, bf16OverFp32 = ratio }, w =>
            {
                w.WriteLine(IslandsCli.NumericsLine());
                foreach (var result in results)
                {
                    w.WriteLine($"train {result.Precision}: {result.ImagesPerSecond:F1} images/s at batch {result.Batch} on {result.Threads} " +
                        $"threads ({result.Parameters:N0} parameters)");
                    w.WriteLine($"  {result.TrainGflopPerImage:F3} GFLOP per training image (forward {result.ForwardGflopPerImage:F3} x 3) -> " +
                        $"{result.AchievedGflops:F1} GFLOP/s");
                    w.WriteLine($"  {result.Precision} matmul peak measured now: {result.MatmulPeakGflops:F1} GFLOP/s -> " +
                        $"{result.FractionOfPeak:P1} of peak");
                    w.WriteLine($"  non-finite guard: {result.GuardedSecondsPerStep * 1e3:F1} ms/step with it, " +
                        $"{result.UnguardedSecondsPerStep * 1e3:F1} ms/step without -> {result.GuardOverhead:P2} overhead (target under 1 %; " +
                        "alternating steps, noisy)");
                    w.WriteLine($"  resident memory {result.RssStartMb:F0} MB at start, {result.RssAfterWarmupMb:F0} MB after " +
                        $"{parse.GetValue(warmup)} warm-up steps, {result.RssEndMb:F0} MB at the end, after {result.Steps} timed and " +
                        $"{Math.Max(2, result.Steps)} guard-pricing steps and the matmul peak's 36 MB matrices (malloc mode {result.Malloc})");
                }
                if (ratio is { } r) w.WriteLine($"bf16 / fp32 training throughput: {r:F2}x");
            });
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }

    private static Command Sample(TextWriter stdout, TextWriter stderr)
    {
        var count = new Option<int>("--count") { DefaultValueFactory = _ => 64 };
        var experts = new Option<int>("--experts") { Description = "Ensemble size for the routed comparison (0 skips it)",
            DefaultValueFactory = _ => 4 };
        var paths = new Option<string?>("--paths")
        {
            Description = "Instead: compare these kernel paths (comma-separated) in alternating rounds, fp32 and bf16; each must pass this CPU's " +
                "self-test",
        };
        var rounds = new Option<int>("--rounds") { Description = "Timed runs (the median is reported), per path with --paths",
            DefaultValueFactory = _ => 3 };
        var command = new Command("sample", "Sampling images/s and network evaluations per image, alone and as a routed ensemble (top1, top2, full)")
        {
            count, experts, SampleCommand.Steps, SampleCommand.Sampler, SampleCommand.Cfg, paths, rounds,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, (ctx, parse, _) =>
        {
            IslandsCli.InitTorch(parse);
            var options = new SamplerOptions(parse.GetValue(SampleCommand.Steps), parse.GetValue(SampleCommand.Sampler)!,
                parse.GetValue(SampleCommand.Cfg));
            options.ThrowIfInvalid();
            if (parse.GetValue(rounds) < 1) throw new Diffusion.ConfigException("--rounds", $"{parse.GetValue(rounds)} must be at least 1");
            if (parse.GetValue(paths) is { } list)
            {
                var compared = VerifiedPaths(list);
                var rows = new[] { "fp32", "bf16" }.SelectMany(p => PathSampleBenchmark.Run(new ModelConfig(), parse.GetValue(count), options, p,
                    compared, parse.GetValue(rounds))).ToList();
                ctx.Result(new { cpu = Diffusion.Numerics.NumericsPolicy.Report.Cpu, paths = rows }, w =>
                {
                    w.WriteLine(IslandsCli.NumericsLine());
                    w.WriteLine($"sample: {parse.GetValue(count)} images, {options.Steps} {options.Method} steps, cfg {options.Cfg}; " +
                        $"{parse.GetValue(rounds)} alternating rounds per path");
                    foreach (var group in rows.GroupBy(r => r.Precision))
                    {
                        var first = group.First();
                        foreach (var r in group)
                            w.WriteLine($"  {r.Precision} {r.Path,-30} {r.Median,7:F1} images/s (median; rounds " +
                                $"{string.Join(" ", r.ImagesPerSecond.Select(v => v.ToString("F1")))}) {r.Median / first.Median,6:F2}x {first.Path}");
                    }
                });
                return Task.FromResult(ExitCodes.Ok);
            }
            var result = SampleBenchmark.Run(new ModelConfig(), parse.GetValue(count), options, rounds: parse.GetValue(rounds));
            var bf16 = SampleBenchmark.Run(new ModelConfig(), parse.GetValue(count), options, "bf16", parse.GetValue(rounds));
            var ensemble = parse.GetValue(experts) > 0
                ? EnsembleBenchmark.Run(new ModelConfig(), parse.GetValue(experts), parse.GetValue(count), options, ["top1", "top2", "full"])
                : [];
            ctx.Result(new { single = result, bf16, bf16OverFp32 = bf16.ImagesPerSecond / result.ImagesPerSecond,
                ensembleExperts = parse.GetValue(experts), ensemble }, w =>
            {
                w.WriteLine(IslandsCli.NumericsLine());
                w.WriteLine($"sample: {result.Count} images, {result.Steps} {result.Sampler} steps, cfg {result.Cfg}: {result.Seconds:F2} s = " +
                    $"{result.ImagesPerSecond:F1} images/s (median of {parse.GetValue(rounds)} runs)");
                w.WriteLine($"  {result.EvaluationsPerImage} network evaluations per image, {result.AchievedGflops:F1} GFLOP/s; resident memory " +
                    $"{result.RssStartMb:F0} -> {result.RssEndMb:F0} MB");
                w.WriteLine($"sample bf16: {bf16.Seconds:F2} s = {bf16.ImagesPerSecond:F1} images/s " +
                    $"({bf16.ImagesPerSecond / result.ImagesPerSecond:F2}x fp32); resident memory -> {bf16.RssEndMb:F0} MB");
                if (ensemble.Count == 0) return;
                w.WriteLine($"ensemble of {parse.GetValue(experts)} experts, same {result.Count} images (measured in this run):");
                w.WriteLine("  strategy      seconds  images/s  cost vs one expert  expert evals/image  router share");
                foreach (var r in ensemble)
                    w.WriteLine($"  {r.Strategy,-12} {r.Seconds,8:F2} {r.ImagesPerSecond,9:F1} {r.CostRelativeToOneExpert,19:F2} " +
                        $"{r.ExpertEvaluationsPerImage,19:F1} {r.RouterShareOfCost,13:P2}");
            });
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }
}
