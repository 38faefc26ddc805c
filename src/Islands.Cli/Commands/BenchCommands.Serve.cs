using System.CommandLine;

namespace Islands.Cli.Commands;

public static partial class BenchCommands
{
    private static Command Serve(TextWriter stdout, TextWriter stderr)
    {
        var store = new Option<string>("--store") { Description = "Checkpoint store with published experts and a router", Required = true };
        var clients = new Option<string>("--clients") { Description = "Concurrent HTTP clients per run, comma-separated",
            DefaultValueFactory = _ => "1,8,32" };
        var nodes = new Option<int>("--nodes") { Description = "In-process serving nodes", DefaultValueFactory = _ => 1 };
        var count = new Option<int>("--count") { Description = "Images per request", DefaultValueFactory = _ => 4 };
        var strategy = new Option<string>("--strategy") { DefaultValueFactory = _ => "top1" };
        var maxRows = new Option<int>("--max-rows")
        {
            Description = "Continuous batch size (islands:serving:batching:maxRows), also the offline batch",
            DefaultValueFactory = _ => 128
        };
        var seconds = new Option<int>("--seconds") { Description = "Load duration per client count", DefaultValueFactory = _ => 20 };
        var slowExpert = new Option<int?>("--slow-expert")
        {
            Description = "Instead: the load of the first --clients count healthy, then with this expert's answers held back by --slow-by, " +
                "with straggler-factor 0 and with the default (latency of the requests that never visit it, against healthy)",
        };
        var stragglerFactor = new Option<double?>("--straggler-factor")
        {
            Description = "islands:serving:stragglerFactor for the served runs (default: serving.conf's)"
        };
        var slowBy = new Option<string>("--slow-by") { Description = "How long the slowed expert holds back each answer",
            DefaultValueFactory = _ => "500ms" };
        var command = new Command("serve", "Served throughput, p50/p99 latency and mean batch size for 1, 8, 32 clients, against offline batched " +
            "sampling of the same ensemble")
        {
            store, clients, nodes, count, strategy, maxRows, seconds, stragglerFactor, slowExpert, slowBy,
            SampleCommand.Steps, SampleCommand.Sampler, SampleCommand.Precision,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, async (ctx, parse, cancel) =>
        {
            var clientCounts = parse.GetValue(clients)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(c => int.TryParse(c, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n)
                    && n is > 0 and <= 1024
                    ? n : throw new Diffusion.ConfigException("--clients", $"'{c}' must be a whole number from 1 to 1024")).ToList();
            IslandsCli.InitTorch(parse);
            // Node logs and Akka's shutdown notice go to stderr, so --json output stays clean.
            var stdoutBefore = Console.Out;
            Console.SetOut(stderr);
            if (parse.GetValue(stragglerFactor) is { } factor && (!double.IsFinite(factor) || factor is < 0 or > 1000))
                throw new Diffusion.ConfigException("--straggler-factor", $"{factor} must be from 0 (steps wait for all their experts) to 1000");
            if (parse.GetValue(slowExpert) is { } slow)
            {
                var delay = Islands.Hosting.IslandNodeConfig.ParseDuration("--slow-by", parse.GetValue(slowBy)!);
                Islands.Hosting.Benchmarks.SlowExpertResult slowed;
                try
                {
                    slowed = await Islands.Hosting.Benchmarks.ServeBenchmark.RunSlowExpertAsync(Path.GetFullPath(parse.GetValue(store)!),
                        parse.GetValue(nodes), clientCounts[0], parse.GetValue(count), parse.GetValue(SampleCommand.Steps), parse.GetValue(strategy)!,
                        parse.GetValue(maxRows), TimeSpan.FromSeconds(parse.GetValue(seconds)), parse.GetValue(SampleCommand.Precision)!, slow, delay,
                        ctx.Log, cancel);
                }
                finally
                {
                    Console.SetOut(stdoutBefore);
                }
                ctx.Result(slowed, w =>
                {
                    w.WriteLine($"serve with expert {slowed.SlowExpert} slowed by {slowed.SlowBySeconds * 1000:0} ms: {slowed.Nodes} node(s), " +
                        $"{slowed.Clients} clients, {slowed.Strategy}, " +
                        $"{slowed.Steps} steps, {slowed.ImagesPerRequest} images per request, on {Diffusion.Numerics.CpuInfo.Read().Model}");
                    w.WriteLine("  phase                          images/s  p50 s   p99 s   requests  never visited it: n  p50 s   p99 s  failed");
                    foreach (var p in slowed.Phases)
                        w.WriteLine($"  {p.Phase,-30} {p.ImagesPerSecond,8:F1} {p.P50Seconds,6:F2} {p.P99Seconds,7:F2} {p.Requests,9} " +
                            $"{p.UntouchedRequests,20} {p.UntouchedP50Seconds,6:F2} {p.UntouchedP99Seconds,7:F2} {p.Failed,7}");
                    w.WriteLine($"  p99 of the requests that never visit the slowed expert, over healthy: {slowed.UntouchedP99OverHealthy:F2} " +
                        $"(straggler-factor 0: {slowed.LockstepUntouchedP99OverHealthy:F2}); overall p99 over straggler-factor 0: " +
                        $"{slowed.P99OverLockstep:F2}");
                });
                return ExitCodes.Ok;
            }
            Islands.Hosting.Benchmarks.ServeBenchmarkResult result;
            try
            {
                result = await Islands.Hosting.Benchmarks.ServeBenchmark.RunAsync(Path.GetFullPath(parse.GetValue(store)!), parse.GetValue(nodes),
                    clientCounts, parse.GetValue(count), parse.GetValue(SampleCommand.Steps), parse.GetValue(strategy)!, parse.GetValue(maxRows),
                    TimeSpan.FromSeconds(parse.GetValue(seconds)), parse.GetValue(SampleCommand.Precision)!, ctx.Log, cancel,
                    parse.GetValue(stragglerFactor), parse.GetValue(SampleCommand.Sampler)!);
            }
            finally
            {
                Console.SetOut(stdoutBefore);
            }
            ctx.Result(result, w =>
            {
                w.WriteLine($"serve: {result.Nodes} node(s), {result.Strategy}, {result.Steps} {parse.GetValue(SampleCommand.Sampler)} steps, " +
                    $"{result.ImagesPerRequest} images per request, max batch {result.MaxBatchRows}, on {Diffusion.Numerics.CpuInfo.Read().Model}");
                w.WriteLine($"  offline batched sampling: {result.OfflineImagesPerSecond:F1} images/s " +
                    $"({string.Join(", ", result.Offline.Select(o => o.ImagesPerSecond.ToString("F1")))})");
                w.WriteLine("  clients  images/s  served/offline  p50 s   p99 s   mean batch  failed");
                foreach (var s in result.Served)
                    w.WriteLine($"  {s.Clients,7} {s.ImagesPerSecond,9:F1} {s.OverOffline,15:F3} {s.P50Seconds,6:F2} {s.P99Seconds,7:F2} " +
                        $"{s.MeanBatchRows,11:F1} {s.Failed,7}");
            });
            return ExitCodes.Ok;
        }));
        return command;
    }
}
