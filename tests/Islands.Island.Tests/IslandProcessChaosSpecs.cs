using System.Diagnostics;
using Islands.Actors;
using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.IO;
using Xunit.Abstractions;
using static Islands.Island.Tests.IslandTestEnvironment;

namespace Islands.Island.Tests;

/// <summary>Chaos test 3: real `islands node` processes on loopback, killed with SIGKILL at random moments.</summary>
[Collection("islands")]
public sealed class IslandProcessChaosSpecs(ITestOutputHelper output)
{
    [Fact]
    public async Task Repeated_kill_minus_9_of_random_nodes_never_loses_the_job_or_leaves_a_half_written_checkpoint()
    {
        const string island = "chaos";
        // Enough steps that the three kills (at committed steps of about 25 to 250 here) come before the end.
        const int steps = 1000;
        var (data, partitions) = await DatasetAsync();
        var store = TempDir("process-chaos");
        var config = Path.Combine(store, "node.json");
        await File.WriteAllTextAsync(config, NodeConfig(data, partitions, steps));
        var journal = await CreateDatabaseAsync(island);
        // Ascending ports: node 0 forms the cluster (the lowest contact point does), so it is the oldest and the first trainer,
        // and it is the leader whenever it is up (Akka's leader is the lowest address); node 1 leads while it is down.
        var ports = Enumerable.Range(0, 3).Select(_ => FreePort()).Order().ToList();
        var httpPorts = Enumerable.Range(0, 3).Select(_ => FreePort()).Order().ToList();
        var nodes = ports.Select((port, i) => new NodeProcess(port, httpPorts[i], Path.Combine(store, $"node-{i}.log"))).ToList();
        var seeds = string.Join(",", nodes.Select(n => n.ContactPoint));
        var random = new Random(Environment.TickCount);
        var passed = false;
        try
        {
            foreach (var node in nodes) Start(node, island, config, store, seeds, journal);
            await WaitAllUp(nodes, island);

            var kills = 0;
            var singletonKills = 0;
            long lastCommittedAtAKill = 0;
            var observed = new List<(long Floor, JobStatus Job)>();
            while (kills < 3)
            {
                var job = await JobStatusAsync(nodes);
                if (job is { Phase: "completed" }) break;
                if (job is not { Phase: "training", LastCheckpoint: not null })
                {
                    await Task.Delay(200);
                    continue;
                }
                // The first kill always hits the node that trains. The second hits node 2 soon after node 0 has rejoined: node 1
                // won the split-brain lease when node 0 went, and node 0, the leader again, must now win it from its own side
                // (a lease kept too long made it down the whole island once). The third hits any node.
                var victim = kills switch
                {
                    0 => nodes.Single(n => n.Address(island) == job.Node),
                    1 => nodes[2],
                    _ => nodes[random.Next(nodes.Count)],
                };
                await Task.Delay(random.Next(200, 2500));
                var before = await JobStatusAsync(nodes, except: victim);
                var floor = before?.LastCheckpoint?.Step ?? 0;
                var wasTraining = (await JobStatusAsync(nodes))?.Node == victim.Address(island);
                victim.Process!.Kill();
                await victim.Process.WaitForExitAsync();
                kills++;
                if (wasTraining) singletonKills++;
                lastCommittedAtAKill = floor;
                output.WriteLine($"kill -9 #{kills}: {victim.Address(island)} (trainer: {wasTraining}), committed step {floor}");

                await Eventually(async () =>
                {
                    var now = await JobStatusAsync(nodes);
                    if (now is not null && now.Node != victim.Address(island)) observed.Add((floor, now));
                    return now is { Phase: "training" or "completed" } && now.Node != victim.Address(island);
                }, TimeSpan.FromSeconds(120), $"training goes on without {victim.Address(island)}");
                // The split-brain resolver must down the dead node: restarted before that, its new incarnation would replace
                // the old one and no decision would be needed.
                await Eventually(async () =>
                {
                    foreach (var survivor in nodes.Where(n => n.Alive))
                        if ((await LocalIsland.StatusAsync(survivor.Http)).Members.Any(m => m.Address == victim.Address(island))) return false;
                    return true;
                }, TimeSpan.FromSeconds(60), $"the survivors down and remove {victim.Address(island)}");
                Start(victim, island, config, store, seeds, journal);
                await WaitAllUp(nodes, island);
            }

            JobStatus? done = null;
            await Eventually(async () =>
            {
                var now = await JobStatusAsync(nodes);
                if (now is not null) observed.Add((lastCommittedAtAKill, now));
                return (done = now) is { Phase: "completed" };
            }, TimeSpan.FromSeconds(300), "the job completes");

            output.WriteLine($"{kills} kills ({singletonKills} of the training node); recoveries {done!.Recoveries}; final step {done.Step}");
            Assert.True(kills >= 2, $"only {kills} kills happened before the job completed");
            Assert.True(singletonKills >= 1);
            Assert.True(done.Recoveries >= singletonKills, $"{done.Recoveries} recoveries after {singletonKills} kills of the training node");
            Assert.Equal(steps, done.Step);
            Assert.All(observed.Where(o => o.Job.Phase is "training" or "completed"),
                o => Assert.True(o.Job.Step >= o.Floor, $"step {o.Job.Step} on {o.Job.Node} went back past the committed {o.Floor}"));

            // Every committed checkpoint directory verifies; anything else is an uncommitted temporary that no reader lists.
            var run = Path.Combine(store, island);
            var checkpoints = new CheckpointStore(run);
            Assert.NotEmpty(checkpoints.List());
            foreach (var (_, dir) in checkpoints.List()) CheckpointStore.Verify(dir);
            foreach (var dir in Directory.GetDirectories(checkpoints.Root))
                Assert.True(checkpoints.List().Any(c => c.Directory == dir) || AtomicFile.IsTemporary(dir), $"{dir} is neither committed nor temporary");
            Assert.Equal(steps, PublishedCheckpoint.ReadVerified(run).Published.Step);
            passed = true;
        }
        finally
        {
            if (!passed) await PrintClusterStateAsync(nodes, journal);
            foreach (var node in nodes.Where(n => n.Alive)) node.Process!.Kill(entireProcessTree: true);
            foreach (var node in nodes) output.WriteLine($"--- {node.Log}: {(File.Exists(node.Log) ? new FileInfo(node.Log).Length : 0)} bytes");
        }
    }

    [Fact]
    public async Task Restarting_the_first_nodes_while_the_others_run_never_forms_a_second_cluster()
    {
        const string island = "rejoin";
        var (data, partitions) = await DatasetAsync();
        var store = TempDir("process-rejoin");
        var config = Path.Combine(store, "node.json");
        await File.WriteAllTextAsync(config, NodeConfig(data, partitions, steps: 5000));
        var journal = await CreateDatabaseAsync(island);
        // Five nodes: the island keeps its majority when two are down at once, and its lease when three are.
        var nodes = Enumerable.Range(0, 5).Select(i => new NodeProcess(FreePort(), FreePort(), Path.Combine(store, $"node-{i}.log"))).ToList();
        var contacts = string.Join(",", nodes.Select(n => n.ContactPoint));
        // The lowest contact points: the one that forms a new cluster, and those a seed-node list would name first.
        var lowest = nodes.OrderBy(n => n.HttpPort).ToList();
        var passed = false;
        try
        {
            foreach (var node in nodes) Start(node, island, config, store, contacts, journal);
            await WaitAllUp(nodes, island);
            await OneClusterAsync(nodes, island, "after start-up");
            for (var round = 1; round <= 2; round++)
            {
                // Round 1: the first node alone. Round 2: the first two together, and the first comes back while the
                // second is still down (the case in which a static seed list lets the first seed join itself).
                var victims = round < 2 ? lowest.Take(1).ToList() : lowest.Take(2).ToList();
                foreach (var victim in victims) victim.Process!.Kill();
                foreach (var victim in victims) await victim.Process!.WaitForExitAsync();
                if (victims.Count == 1)
                {
                    // Back before the others have even noticed: its old incarnation is still a member, as in the kill loop that found the bug.
                    await Task.Delay(TimeSpan.FromSeconds(2));
                }
                else
                {
                    // Two at once: back once the survivors (a majority) have removed both, so that nothing but the restart is in play.
                    var survivors = nodes.Except(victims).ToList();
                    await Eventually(async () =>
                    {
                        foreach (var s in survivors)
                            if ((await LocalIsland.StatusAsync(s.Http)).Members.Count != survivors.Count) return false;
                        return true;
                    }, TimeSpan.FromSeconds(90), $"the {survivors.Count} survivors remove the two killed nodes");
                }
                foreach (var victim in victims)
                {
                    Start(victim, island, config, store, contacts, journal);
                    await Eventually(async () => (await LocalIsland.StatusAsync(victim.Http)).Members.Any(m => m.Status == "Up" && m.Address == victim.Address(island)),
                        TimeSpan.FromSeconds(90), $"{victim.Address(island)} is up in a cluster again");
                }
                await WaitAllUp(nodes, island);
                await OneClusterAsync(nodes, island, $"after round {round} ({string.Join(", ", victims.Select(v => v.Address(island)))} restarted)");
                output.WriteLine($"round {round}: restarted {string.Join(", ", victims.Select(v => v.Address(island)))}; one cluster again");
            }
            // Round 3: three of the five at once, the training node among them. The two survivors are a minority, which
            // keep-majority downs; with the split-brain lease in the journal database (lease-majority) they keep the
            // island and train on.
            var before = (await JobStatusAsync(nodes))!;
            var trainer = nodes.Single(n => n.Address(island) == before.Node);
            var three = nodes.Where(n => n != trainer).Take(2).Prepend(trainer).ToList();
            var two = nodes.Except(three).ToList();
            foreach (var victim in three) victim.Process!.Kill();
            foreach (var victim in three) await victim.Process!.WaitForExitAsync();
            await Eventually(async () =>
            {
                foreach (var survivor in two)
                {
                    if (!survivor.Alive) throw new InvalidOperationException($"{survivor.Address(island)} exited after three of five were killed; see {survivor.Log}");
                    var status = await LocalIsland.StatusAsync(survivor.Http);
                    if (status.Members.Count != two.Count) return false;
                    if (status.Job is not { Phase: "training" } job || job.Step <= before.Step || !two.Any(t => t.Address(island) == job.Node)) return false;
                }
                return true;
            }, TimeSpan.FromSeconds(120), "the two survivors of three kills remove the dead and train on past the step of the kills");
            output.WriteLine($"round 3: killed {string.Join(", ", three.Select(v => v.Address(island)))} at step {before.Step}; the two survivors train on");
            foreach (var victim in three) Start(victim, island, config, store, contacts, journal);
            await WaitAllUp(nodes, island);
            await OneClusterAsync(nodes, island, "after round 3 (three restarted)");
            // Only the very first start formed a cluster: no later incarnation of any node joined itself.
            var selfJoins = nodes.Sum(n => File.ReadLines(n.Log).Count(l => l.Contains("is JOINING itself", StringComparison.Ordinal)));
            Assert.Equal(1, selfJoins);
            passed = true;
        }
        finally
        {
            if (!passed) await PrintClusterStateAsync(nodes);
            foreach (var node in nodes.Where(n => n.Alive)) node.Process!.Kill(entireProcessTree: true);
        }
    }

    /// <summary>On a failure: each live node's view (members, job, lease), each log's cluster decisions and the leases' holders.</summary>
    private async Task PrintClusterStateAsync(List<NodeProcess> nodes, string? journal = null)
    {
        if (journal is not null)
        {
            try
            {
                foreach (var lease in await Hosting.JournalLease.HoldersAsync(journal))
                    output.WriteLine($"lease {lease.Name}: {lease.Owner ?? "free"} (epoch {lease.Epoch}, expires {lease.ExpiresUtc:HH:mm:ss})");
            }
            catch (Npgsql.NpgsqlException e)
            {
                output.WriteLine($"leases: {e.Message}");
            }
        }
        foreach (var node in nodes)
        {
            output.WriteLine($"=== node {node.ContactPoint} (akka port {node.Port}, alive {node.Alive})");
            if (node.Alive)
            {
                try
                {
                    var status = await LocalIsland.StatusAsync(node.Http);
                    output.WriteLine($"members: {string.Join(", ", status.Members.Select(m => $"{m.Address} {m.Status}{(m.Reachable ? "" : " unreachable")}"))}; " +
                        $"leader {status.Leader}; job {status.Job?.Phase} step {status.Job?.Step} on {status.Job?.Node} ({status.Job?.LastError}); lease {status.Lease?.Owner}");
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                    output.WriteLine($"status: {e.Message}");
                }
            }
            foreach (var line in node.ClusterEventLines()) output.WriteLine(line);
        }
    }

    /// <summary>Every node agrees on the members (all Up), on the leader and on where the training job runs.</summary>
    private static async Task OneClusterAsync(List<NodeProcess> nodes, string island, string when)
    {
        await Eventually(async () =>
        {
            var views = new List<Hosting.IslandStatus>();
            foreach (var node in nodes) views.Add(await LocalIsland.StatusAsync(node.Http));
            var expected = nodes.Select(n => n.Address(island)).Order().ToList();
            return views.All(v => v.Members.Where(m => m.Status == "Up" && m.Reachable).Select(m => m.Address).Order().SequenceEqual(expected))
                && views.Select(v => v.Leader).Distinct().Count() == 1
                && views.All(v => v.Job is not null) && views.Select(v => v.Job!.Node).Distinct().Count() == 1;
        }, TimeSpan.FromSeconds(90), $"all {nodes.Count} nodes agree on members, leader and the job's node {when}");
    }

    private static void Start(NodeProcess node, string island, string config, string store, string contacts, string journal) => node.Start(
        [
            "node", "--island", island, "--job", "expert:3", "--config", config,
            "--port", node.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--http-port", node.HttpPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--contact-points", contacts, "--store", store, "--journal", "postgresql", "--threads", "2",
        ],
        new Dictionary<string, string> { ["ISLANDS_JOURNAL_CONNECTION_STRING"] = journal });

    private static async Task WaitAllUp(List<NodeProcess> nodes, string island)
    {
        foreach (var node in nodes)
        {
            await Eventually(async () =>
            {
                if (!node.Alive) throw new InvalidOperationException($"node {node.Address(island)} exited; see {node.Log}");
                return (await LocalIsland.StatusAsync(node.Http)).Members.Count(m => m.Status == "Up") == nodes.Count;
            }, TimeSpan.FromSeconds(90), $"{node.Address(island)} sees {nodes.Count} members up");
        }
    }

    private static async Task<JobStatus?> JobStatusAsync(List<NodeProcess> nodes, NodeProcess? except = null)
    {
        foreach (var node in nodes.Where(n => n.Alive && n != except))
        {
            try
            {
                if ((await LocalIsland.StatusAsync(node.Http)).Job is { } job) return job;
            }
            catch (HttpRequestException) { }
            catch (TaskCanceledException) { }
        }
        return null;
    }
}

file static class IslandNodeAddress
{
    public static string Address(this NodeProcess node, string island) => node.AkkaAddress($"islands-{island}");
}
