using System.CommandLine;
using Islands.Hosting;
using Islands.Cli.Launcher;

namespace Islands.Cli.Commands;

/// <summary><c>islands cluster up|status|down</c> and <c>islands chaos</c>: a multi-process cluster on one machine, and random kills of it.</summary>
public static class ClusterCommands
{
    private static Option<string> Work() => new("--work")
    {
        Description = "The cluster's working directory (data, store, journals, logs, cluster.json)",
        DefaultValueFactory = _ => "runs/cluster"
    };

    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var cluster = new Command("cluster", "Run a cluster of real node processes on this machine (no Docker): expert islands, the router " +
            "island, serving");
        cluster.Add(Up(stdout, stderr));
        cluster.Add(Status(stdout, stderr));
        cluster.Add(Down(stdout, stderr));
        return cluster;
    }

    private static Command Up(TextWriter stdout, TextWriter stderr)
    {
        var work = Work();
        var islands = new Option<int>("--islands") { Description = "Expert islands (K partitions); a router island is added",
            DefaultValueFactory = _ => 4 };
        var nodes = new Option<int>("--nodes-per-island") { Description = "Node processes per island (more than one needs --postgres)",
            DefaultValueFactory = _ => 1 };
        var serving = new Option<int>("--serving-nodes")
        {
            Description = "Serving node processes (three by default, so that one killed node leaves two)",
            DefaultValueFactory = _ => 3
        };
        var steps = new Option<int>("--steps") { Description = "Training steps per expert (the router trains twice as many)",
            DefaultValueFactory = _ => 2000 };
        var portBase = new Option<int>("--port-base") { Description = "First remoting port (HTTP ports are 1000 higher; serving starts at base+500)",
            DefaultValueFactory = _ => 6000 };
        var postgres = new Option<string?>("--postgres")
        {
            Description = "PostgreSQL server connection string for islands of several nodes (default: ISLANDS_POSTGRES)"
        };
        var islandConfig = new Option<string?>("--island-config")
        {
            Description = "JSON configuration file the expert islands' nodes read (--config): training settings, model size, split-brain timing"
        };
        var command = new Command("up", "Start the cluster's node processes (detached) and wait until every node is ready")
        {
            work, islands, nodes, serving, steps, portBase, postgres, islandConfig
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, async (ctx, parse, cancel) =>
        {
            IslandsCli.InitTorch(parse);
            var state = await LocalCluster.UpAsync(parse.GetValue(work)!, parse.GetValue(islands), parse.GetValue(nodes), parse.GetValue(serving),
                parse.GetValue(steps), parse.GetValue(portBase), parse.GetValue(postgres) ?? Environment.GetEnvironmentVariable("ISLANDS_POSTGRES"),
                parse.GetValue(islandConfig), ctx.Log, cancel);
            ctx.Result(state, w =>
            {
                w.WriteLine($"cluster in {state.Work}: {state.K} expert islands + router, {state.NodesPerIsland} node(s) each ({state.Journal}), " +
                    $"{state.Serving.Count()} serving node(s)");
                foreach (var p in state.Processes) w.WriteLine($"  {p.Name,-12} pid {p.Pid,-7} {p.Http}   log {p.Log}");
                if (state.Serving.FirstOrDefault() is { } api)
                    w.WriteLine($"API: {api.Http}/v1/generations (key in {state.ApiKeyFile}); `islands cluster status --work {state.Work}`; " +
                        $"`islands cluster down --work {state.Work}`");
                foreach (var node in state.Serving.Where(s => s.Viewer is not null))
                    w.WriteLine($"Viewer: {node.Viewer} ({node.Name}; sign in with the key in {state.ApiKeyFile})");
            });
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command Status(TextWriter stdout, TextWriter stderr)
    {
        var work = Work();
        var command = new Command("status", "Every node process of the cluster: alive, ready, and each island's job") { work };
        command.SetAction(IslandsCli.Action(stdout, stderr, async (ctx, parse, cancel) =>
        {
            var state = LocalCluster.Load(parse.GetValue(work)!);
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(3) };
            var nodes = new List<NodeState>();
            foreach (var p in state.Processes)
                nodes.Add(new NodeState(p.Name, p.Role, p.Pid, LocalCluster.Alive(p),
                    LocalCluster.Alive(p) && await LocalCluster.ReadyAsync(http, p, cancel), p.Http));
            var jobs = new List<(string Island, Islands.Actors.JobStatus? Job, long? PlannedSteps)>();
            foreach (var island in state.Islands)
                jobs.Add((island.Key, (await LocalCluster.IslandStatusAsync(http, island, cancel))?.Job, LocalCluster.PlannedSteps(island)));
            ctx.Result(new { state.Work, nodes, jobs = jobs.Select(j => new { j.Island, j.Job, j.PlannedSteps }) }, w =>
            {
                foreach (var n in nodes)
                    w.WriteLine($"  {n.Name,-12} pid {n.Pid,-7} {(n.Alive ? n.Ready ? "ready" : "starting" : "DOWN"),-8} {n.Http}");
                foreach (var (island, job, planned) in jobs)
                    w.WriteLine(job is null ? $"  {island}: {StatusText.NoAnswer(planned)}"
                        : $"  {island}: {StatusText.Job(job)}, recoveries {job.Recoveries}");
            });
            return ExitCodes.Ok;
        }));
        return command;
    }

    private sealed record NodeState(string Name, string Role, int Pid, bool Alive, bool Ready, string Http);

    private static Command Down(TextWriter stdout, TextWriter stderr)
    {
        var work = Work();
        var grace = new Option<int>("--grace-seconds") { Description = "How long nodes get to commit and leave before SIGKILL",
            DefaultValueFactory = _ => 90 };
        var command = new Command("down", "Stop the cluster's processes gracefully (training nodes commit their current step)") { work, grace };
        command.SetAction(IslandsCli.Action(stdout, stderr, async (ctx, parse, _) =>
        {
            var state = LocalCluster.Load(parse.GetValue(work)!);
            var stopped = await LocalCluster.DownAsync(state, TimeSpan.FromSeconds(parse.GetValue(grace)), ctx.Log);
            ctx.Result(new { state.Work, stopped }, w => w.WriteLine($"stopped {stopped} node process(es) of {state.Work}"));
            return ExitCodes.Ok;
        }));
        return command;
    }

    public static Command Chaos(TextWriter stdout, TextWriter stderr)
    {
        var work = Work();
        var every = new Option<string>("--kill-every") { Description = "Time between kills, e.g. 30s", DefaultValueFactory = _ => "30s" };
        var duration = new Option<string>("--duration") { Description = "How long to run, e.g. 10m", DefaultValueFactory = _ => "10m" };
        var restart = new Option<string>("--restart-after") { Description = "How long a killed node stays down before it is restarted",
            DefaultValueFactory = _ => "5s" };
        var clients = new Option<int>("--clients") { Description = "Concurrent generation clients during the run", DefaultValueFactory = _ => 2 };
        var seed = new Option<int>("--seed") { Description = "Seed of the victim choice", DefaultValueFactory = _ => 0 };
        var command = new Command("chaos", "Kill random node processes of a local cluster (only those it started) and restart them; report " +
            "what survived")
        {
            work, every, duration, restart, clients, seed,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, async (ctx, parse, cancel) =>
        {
            var report = await LocalChaos.RunAsync(parse.GetValue(work)!, IslandNodeConfig.ParseDuration("--kill-every", parse.GetValue(every)!),
                IslandNodeConfig.ParseDuration("--duration", parse.GetValue(duration)!), IslandNodeConfig.ParseDuration("--restart-after",
                    parse.GetValue(restart)!), parse.GetValue(clients), parse.GetValue(seed), ctx.Log, cancel);
            ctx.Result(report, w =>
            {
                w.WriteLine($"chaos: {report.Kills.Count} kills in {report.Seconds:F0} s");
                w.WriteLine();
                w.WriteLine("| measure | result |");
                w.WriteLine("|---|---|");
                w.WriteLine($"| jobs completed | {report.JobsCompleted} of {report.Islands.Count} " +
                    $"({string.Join(", ", report.Islands.Select(i => $"{i.Island} {i.Phase} {i.Step}/{i.TotalSteps}"))}) |");
                w.WriteLine($"| checkpoints verified | {report.Islands.Sum(i => i.CheckpointsVerified)} of " +
                    $"{report.Islands.Sum(i => i.CheckpointsOnDisk)} on disk; publications verified " +
                    $"{report.Islands.Count(i => i.PublicationVerified)} of {report.Islands.Count} |");
                w.WriteLine($"| journal's last commits verified | {report.Islands.Count(i => i.JournalReferenceVerified)} of " +
                    $"{report.Islands.Count} |");
                w.WriteLine($"| one cluster per island and for serving | {(report.OneClusterEverywhere ? "yes" : "NO")} |");
                w.WriteLine($"| serving serves every island's last publication (fetched over HTTP) | {(report.ServingCurrent ? "yes" : "NO")} |");
                w.WriteLine($"| recoveries (journal replays) | {string.Join(", ", report.Islands.Select(i => $"{i.Island} {i.Recoveries}"))} |");
                var timed = report.Kills.Where(k => k.RecoverySeconds is not null).ToList();
                w.WriteLine($"| recovery after a kill | {(timed.Count == 0 ? "-"
                    : $"mean {timed.Average(k => k.RecoverySeconds!.Value):F1} s, max {timed.Max(k => k.RecoverySeconds!.Value):F1} s")}; " +
                    $"{report.Kills.Count - timed.Count} not recovered |");
                w.WriteLine($"| requests served | {report.RequestsServed} ({report.RequestsDegraded} degraded, {report.RequestsRetried} needed " +
                    "a retry) |");
                w.WriteLine($"| requests lost | {report.RequestsLost} |");
                w.WriteLine();
                foreach (var k in report.Kills)
                    w.WriteLine($"  kill {k.Kill} at {k.AtSeconds:F0} s: {k.Victim} -> " +
                        $"{(k.RecoverySeconds is { } s ? $"{s:F1} s ({k.RecoveredBy})" : "not recovered")}");
                foreach (var problem in report.Islands.SelectMany(i => i.Problems)) w.WriteLine($"  problem: {problem}");
                foreach (var i in report.Islands.Where(i => i.ClusterProblem is not null)) w.WriteLine($"  problem: {i.Island}: {i.ClusterProblem}");
                if (report.ServingClusterProblem is { } serving) w.WriteLine($"  problem: serving: {serving}");
                if (report.ServingBehindProblem is { } behind) w.WriteLine($"  problem: serving: {behind}");
                foreach (var reason in report.LostReasons.Distinct().Take(5)) w.WriteLine($"  lost: {reason}");
            });
            return report.RequestsLost == 0 && report.AllCheckpointsVerified && report.OneClusterEverywhere && report.ServingCurrent
                   && report.Kills.All(k => k.RecoverySeconds is not null)
                ? ExitCodes.Ok : ExitCodes.Failure;
        }));
        return command;
    }
}
