using System.Collections;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Akka.Actor;
using Islands.Actors;
using Islands.Diffusion.Checkpoints;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Islands.Hosting.Benchmarks;

public sealed record IslandThroughput(string Mode, int Round, long Steps, double Seconds, double ImagesPerSecond);

public sealed record IslandKill(int Kill, long StepAtKill, long ResumedFromStep, long StepsLost, double SecondsToFirstNewStep, string Victim,
    string Survivor);

public sealed record IslandBenchmarkResult(
    string Job, int Batch, int CheckpointEvery, IReadOnlyList<IslandThroughput> Throughput, double BareImagesPerSecond, double ActorImagesPerSecond,
    double ActorOverBare, string Journal, double StableAfterSeconds, IReadOnlyList<IslandKill> Kills);

/// <summary>
/// `islands bench island`: (1) training images/s of the same job in the bare loop and inside a one-node island,
/// interleaved over rounds and timed between the same two checkpoint commits (manifest timestamps), so both include the
/// same commits and neither includes data loading; (2) an in-process island of three nodes whose training node is
/// killed hard at random moments: seconds from the kill to the first new step on a survivor, and steps lost per kill.
/// </summary>
public static class IslandBenchmark
{
    /// <param name="nodeConfig">The node configuration (JSON) for a job of the given number of steps.</param>
    public static IslandBenchmarkResult Run(Func<long, string> nodeConfig, long steps, string work, int rounds, int kills, TimeSpan stableAfter,
        string? postgres, Action<string> log, CancellationToken cancel)
    {
        Directory.CreateDirectory(work);
        var configFile = Path.Combine(work, "bench.json");
        File.WriteAllText(configFile, nodeConfig(steps));
        // The failover island trains until the benchmark has done its kills.
        var failoverConfig = Path.Combine(work, "failover.json");
        File.WriteAllText(failoverConfig, nodeConfig(10_000_000));
        var probe = Settings("probe", configFile, work, 0, null, "sqlite", null, stableAfter);
        var job = probe.Job;
        var throughput = new List<IslandThroughput>();
        // Round 0 is a warm-up pair, reported but not counted: the first island in a process also JIT-compiles Akka,
        // ASP.NET Core and the serializers on background threads while it trains.
        for (var round = 0; round <= rounds && !cancel.IsCancellationRequested; round++)
        {
            // ABBA order, so neither mode always runs second on a machine that warms up or slows down.
            var bareFirst = round % 2 == 1;
            foreach (var mode in bareFirst ? new[] { "bare", "island" } : ["island", "bare"])
            {
                throughput.Add(mode == "bare"
                    ? Bare(probe, Path.Combine(work, $"bare-{round}"), round)
                    : InIsland(configFile, work, round, stableAfter).GetAwaiter().GetResult());
                log($"round {(round == 0 ? "0 (warm-up)" : round)}: {(mode == "bare" ? "bare loop" : "one-node island")} " +
                    $"{throughput[^1].ImagesPerSecond:F1} img/s");
            }
        }
        var counted = throughput.Where(t => t.Round > 0).ToList();
        var bare = counted.Where(t => t.Mode == "bare").Sum(t => t.Steps) * (double)job.BatchSize / counted.Where(t => t.Mode == "bare")
            .Sum(t => t.Seconds);
        var actor = counted.Where(t => t.Mode == "island").Sum(t => t.Steps) * (double)job.BatchSize / counted.Where(t => t.Mode == "island")
            .Sum(t => t.Seconds);
        var killResults = kills > 0 ? Failover(failoverConfig, job, work, kills, stableAfter, postgres, log, cancel).GetAwaiter().GetResult() : [];
        return new IslandBenchmarkResult(job.Name, job.BatchSize, job.CheckpointEvery, throughput, bare, actor, actor / bare,
            postgres is null ? "sqlite (one file shared by the in-process nodes)" : "postgresql", stableAfter.TotalSeconds, killResults);
    }

    internal static IslandNodeSettings Settings(string island, string configFile, string store, int port, string? contactPoints, string provider,
        string? connection, TimeSpan stableAfter, int httpPort = 0)
    {
        var options = new Dictionary<string, string?>
        {
            ["islands:island"] = island,
            ["islands:store"] = store,
            ["islands:port"] = port.ToString(CultureInfo.InvariantCulture),
            ["islands:http:port"] = httpPort.ToString(CultureInfo.InvariantCulture),
            ["islands:bootstrap:contactPoints"] = contactPoints,
            ["islands:journal:provider"] = provider,
            ["islands:journal:connectionString"] = connection,
            ["islands:splitBrain:stableAfter"] = $"{(int)stableAfter.TotalMilliseconds}ms",
        };
        return IslandNodeConfig.Parse(IslandNodeConfig.Load(configFile, options, new Hashtable()));
    }

    /// <summary>
    /// The loop an island's worker runs, without actors: chunks of steps and a commit at every interval. It runs on a new
    /// thread, as the worker does on its pinned dispatcher: libtorch and malloc keep per-thread state, and a warm main
    /// thread measured up to 15 % faster than a fresh one in paired runs, which is not a cost of the actor layer.
    /// </summary>
    private static IslandThroughput Bare(IslandNodeSettings settings, string run, int round)
    {
        IslandThroughput? result = null;
        var thread = new Thread(() => result = BareOnThisThread(settings, run, round));
        thread.Start();
        thread.Join();
        return result!;
    }

    private static IslandThroughput BareOnThisThread(IslandNodeSettings settings, string run, int round)
    {
        using var trainer = settings.Job.Open(run);
        while (trainer.Step < trainer.TotalSteps)
        {
            var until = trainer.CheckpointEvery - (int)(trainer.Step % trainer.CheckpointEvery);
            trainer.Train(Math.Min(settings.ChunkSteps, until));
            if (trainer.Step % trainer.CheckpointEvery == 0 || trainer.Step >= trainer.TotalSteps) trainer.Commit();
        }
        return Between(new CheckpointStore(run), settings.Job.BatchSize, "bare", round);
    }

    private static async Task<IslandThroughput> InIsland(string configFile, string work, int round, TimeSpan stableAfter)
    {
        var settings = Settings($"bench-{round}", configFile, Path.Combine(work, "islands"), 0, null, "sqlite", null, stableAfter);
        await using var app = IslandNode.Build(settings, Quiet);
        await app.StartAsync();
        var proxy = await app.Services.GetRequiredService<Akka.Hosting.IRequiredActor<TrainingJobSingleton>>().GetAsync();
        while (true)
        {
            var status = await Ask(proxy);
            if (status is { Phase: "completed" }) break;
            await Task.Delay(1000);
        }
        await app.StopAsync();
        return Between(new CheckpointStore(settings.RunDirectory), settings.Job.BatchSize, "island", round);
    }

    /// <summary>Images/s between the first and the last commit of a run, from the manifests' timestamps.</summary>
    internal static IslandThroughput Between(CheckpointStore store, int batch, string mode, int round)
    {
        var manifests = store.List().Select(c => CheckpointStore.Verify(c.Directory)).OrderBy(m => m.Step).ToList();
        if (manifests.Count < 2)
            throw new Diffusion.ConfigException("islands:training:keepCheckpoints", "the benchmark needs at least two checkpoints kept");
        var first = manifests[0];
        var last = manifests[^1];
        var seconds = (last.CreatedUtc - first.CreatedUtc).TotalSeconds;
        return new IslandThroughput(mode, round, last.Step - first.Step, seconds, (last.Step - first.Step) * batch / seconds);
    }

    private static async Task<IReadOnlyList<IslandKill>> Failover(string configFile, Diffusion.Training.TrainingJob job, string work, int kills,
        TimeSpan stableAfter, string? postgres, Action<string> log, CancellationToken cancel)
    {
        const string island = "bench-failover";
        var store = Path.Combine(work, "failover");
        Directory.CreateDirectory(Path.Combine(store, island));
        var provider = postgres is null ? "sqlite" : "postgresql";
        var connection = postgres ?? $"Data Source={Path.Combine(store, island, "journal.db")}";
        // Three slots of fixed ports, found through contact points as real nodes are; a killed node is restarted in its own
        // slot, as a process manager restarts a process. (With a static seed list of the first two nodes, both seeds were
        // dead after two kills, the next node could never join, and the island shrank to two nodes, where keep-majority
        // downs the survivor when the older one is killed: the 4-minute stall in which nobody trained.)
        var slots = Enumerable.Range(0, 3).Select(_ => (Port: FreePort(), HttpPort: FreePort())).ToList();
        var contacts = string.Join(",", slots.Select(s => $"127.0.0.1:{s.HttpPort}"));
        var nodes = new List<(WebApplication App, string Address)>();
        async Task StartNode((int Port, int HttpPort) slot)
        {
            var settings = Settings(island, configFile, store, slot.Port, contacts, provider, connection, stableAfter, slot.HttpPort);
            var app = IslandNode.Build(settings, Quiet);
            await app.StartAsync();
            nodes.Add((app, $"akka.tcp://islands-{island}@127.0.0.1:{slot.Port}"));
        }
        foreach (var slot in slots) await StartNode(slot);
        var results = new List<IslandKill>();
        var random = new Random(1);
        try
        {
            for (var kill = 1; kill <= kills && !cancel.IsCancellationRequested; kill++)
            {
                // One failure at a time: every node, the last one restarted included, is Up before the next kill.
                await WaitAllUp(nodes, slots.Count, cancel);
                // Kill at a uniformly random moment within a checkpoint interval, once a first checkpoint is committed.
                var (training, _) = await WaitTraining(nodes, null);
                while (training.LastCheckpoint is null)
                {
                    await Task.Delay(200, cancel);
                    (training, _) = await WaitTraining(nodes, null);
                }
                var interval = training.ImagesPerSecond > 0 ? job.CheckpointEvery * job.BatchSize / training.ImagesPerSecond : 5;
                await Task.Delay(TimeSpan.FromSeconds(random.NextDouble() * interval), cancel);
                (training, _) = await WaitTraining(nodes, null);
                var victim = nodes.Single(n => n.Address == training.Node);
                var stepAtKill = training.Step;
                var watch = Stopwatch.StartNew();
                ((ExtendedActorSystem)victim.App.Services.GetRequiredService<ActorSystem>()).Abort();
                nodes.Remove(victim);
                var stopped = victim.App.StopAsync(new CancellationTokenSource(TimeSpan.FromSeconds(2)).Token);
                JobStatus resumed;
                while (true)
                {
                    (resumed, _) = await WaitTraining(nodes, victim.Address);
                    if (resumed.ResumedFromStep is { } from && resumed.Step > from) break;
                    await Task.Delay(100);
                }
                var seconds = watch.Elapsed.TotalSeconds;
                var from0 = resumed.ResumedFromStep ?? 0;
                results.Add(new IslandKill(kill, stepAtKill, from0, Math.Max(0, stepAtKill - from0), seconds, victim.Address, resumed.Node ?? "?"));
                log($"kill {kill}: {victim.Address} at step {stepAtKill}; {resumed.Node} trained again {seconds:F1} s later, from step {from0} " +
                    $"({stepAtKill - from0} steps lost)");
                try { await stopped; } catch (OperationCanceledException) { }
                await victim.App.DisposeAsync();
                await StartNode(slots.Single(s => victim.Address.EndsWith($":{s.Port}", StringComparison.Ordinal)));
            }
        }
        finally
        {
            foreach (var (app, _) in nodes)
            {
                ((ExtendedActorSystem)app.Services.GetRequiredService<ActorSystem>()).Abort();
                try { await app.StopAsync(new CancellationTokenSource(TimeSpan.FromSeconds(2)).Token); } catch (OperationCanceledException) { }
                await app.DisposeAsync();
            }
        }
        return results;
    }

    private static async Task WaitAllUp(List<(WebApplication App, string Address)> nodes, int count, CancellationToken cancel)
    {
        var deadline = DateTime.UtcNow.AddMinutes(3);
        while (nodes.Any(n => Akka.Cluster.Cluster.Get(n.App.Services.GetRequiredService<ActorSystem>())
            .State.Members.Count(m => m.Status == Akka.Cluster.MemberStatus.Up) != count))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"the island's {count} nodes were not all up within 3 minutes");
            await Task.Delay(200, cancel);
        }
    }

    /// <summary>Polls the island's surviving nodes until one reports the job training (or completed) on a node other than
    /// <paramref name="not"/>.</summary>
    private static async Task<(JobStatus Job, string Via)> WaitTraining(List<(WebApplication App, string Address)> nodes, string? not)
    {
        var deadline = DateTime.UtcNow.AddMinutes(5);
        while (DateTime.UtcNow < deadline)
        {
            foreach (var (app, address) in nodes.ToList())
            {
                var proxy = await app.Services.GetRequiredService<Akka.Hosting.IRequiredActor<TrainingJobSingleton>>().GetAsync();
                var status = await Ask(proxy);
                if (status is { Phase: "training" or "completed", Node: not null } && status.Node != not) return (status, address);
            }
            await Task.Delay(100);
        }
        throw new TimeoutException("the island did not report its job training within 5 minutes");
    }

    internal static async Task<JobStatus?> Ask(IActorRef proxy)
    {
        try { return await proxy.Ask<JobStatus>(GetJobStatus.Instance, TimeSpan.FromSeconds(2)); }
        catch (AskTimeoutException) { return null; }
    }

    /// <summary>Node logs at Error only, so the benchmark's own lines stay readable; ISLANDS_BENCH_LOG=info shows everything.</summary>
    internal static void Quiet(ILoggingBuilder logging) =>
        logging.SetMinimumLevel(Environment.GetEnvironmentVariable("ISLANDS_BENCH_LOG") == "info" ? LogLevel.Information : LogLevel.Error);

    internal static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
