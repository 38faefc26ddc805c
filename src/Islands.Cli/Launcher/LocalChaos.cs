using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Islands.Hosting;
using Islands.Diffusion;
using Islands.Diffusion.Checkpoints;

namespace Islands.Cli.Launcher;

/// <summary>
/// `islands chaos`: kills random node processes of a local cluster (only those cluster.json lists) with SIGKILL on a
/// schedule and restarts each after a pause, while clients send generation requests (retrying a failed one on another
/// serving node with the same Idempotency-Key, as a careful client does). Then it reports jobs completed, checkpoints
/// verified (every committed checkpoint on disk, and each publication), recoveries and their durations, and requests
/// served and lost.
/// </summary>
public static class LocalChaos
{
    public static async Task<ChaosReport> RunAsync(string work, TimeSpan killEvery, TimeSpan duration, TimeSpan restartAfter, int clients, int seed,
        Action<string> log, CancellationToken cancel)
    {
        var state = LocalCluster.Load(work);
        var random = new Random(seed);
        var clock = Stopwatch.StartNew();
        var key = (await File.ReadAllTextAsync(state.ApiKeyFile, cancel)).Trim();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        var served = 0;
        var retried = 0;
        var degraded = 0;
        var lost = new ConcurrentBag<string>();
        var serving = state.Serving.ToList();
        var load = serving.Count == 0 ? [] : Enumerable.Range(0, clients).Select(c => Task.Run(async () =>
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(3) };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
            // The API's typed client, one per node and without retries of its own: this loop fails over to the next node.
            var clients = serving.ToDictionary(s => s.Name, s => GenerationClient.Create(s.Http, key, TimeSpan.FromMinutes(3), retries: 0));
            // Requests start once there is something to serve (a router and every expert published): a 503 before that
            // is a refusal, not a lost request.
            while (!stop.IsCancellationRequested && !await EnsemblePublishedAsync(http, serving, state.K))
                await Task.Delay(1000, CancellationToken.None);
            for (var n = 0; !stop.IsCancellationRequested; n++)
            {
                var idempotency = $"chaos-{seed}-{c}-{n}";
                string? reason = null;
                var ok = false;
                for (var attempt = 0; attempt < 6 && !ok; attempt++)
                {
                    var node = serving[(c + n + attempt) % serving.Count];
                    try
                    {
                        var (status, _, bytes) = await clients[node.Name].GenerateAsync(new { count = 2, steps = 10, format = "json" }, idempotency,
                            CancellationToken.None);
                        if ((int)status is >= 200 and <= 299)
                        {
                            var body = System.Text.Json.JsonDocument.Parse(bytes).RootElement;
                            if (body.GetProperty("leftOutExperts").GetArrayLength() > 0) Interlocked.Increment(ref degraded);
                            ok = true;
                            break;
                        }
                        reason = $"{node.Name}: {(int)status} {System.Text.Encoding.UTF8.GetString(bytes)}";
                    }
                    catch (Exception e) when (e is IslandsException or TaskCanceledException)
                    {
                        reason = $"{node.Name}: {e.Message}";
                    }
                    if (attempt == 0) Interlocked.Increment(ref retried);
                    await Task.Delay(TimeSpan.FromSeconds(2 + attempt * 3), CancellationToken.None);
                }
                if (ok) Interlocked.Increment(ref served);
                else lost.Add(reason ?? "no answer");
            }
            foreach (var client in clients.Values) client.Dispose();
        }, CancellationToken.None)).ToList();

        var kills = new List<ChaosKill>();
        var recoveries = new List<Task>();
        using var probe = new HttpClient { Timeout = TimeSpan.FromSeconds(3) };
        try
        {
            // Kills on a fixed schedule (every kill-every from the start), so the pause before a restart does not stretch it:
            // 6 minutes at 30 s are 12 kills.
            for (var next = killEvery; next <= duration; next += killEvery)
            {
                if (next > clock.Elapsed) await Task.Delay(next - clock.Elapsed, cancel);
                state = LocalCluster.Load(work);
                var candidates = state.Processes.Where(LocalCluster.Alive).ToList();
                if (candidates.Count == 0) continue;
                // Every third kill hits a group's first node: the one a static seed list would let form a second cluster.
                var firsts = candidates.Where(p => state.Processes.First(q => q.Group == p.Group).Name == p.Name).ToList();
                var victim = kills.Count % 3 == 2 && firsts.Count > 0 ? firsts[random.Next(firsts.Count)] : candidates[random.Next(candidates.Count)];
                var at = clock.Elapsed.TotalSeconds;
                log($"{clock.Elapsed:mm\\:ss} kill -9 {victim.Name} (pid {victim.Pid})");
                LocalCluster.Signal(victim.Pid, "KILL");
                var number = kills.Count + 1;
                kills.Add(new ChaosKill(number, victim.Name, victim.Role, victim.Group, at, null, ""));
                await Task.Delay(restartAfter, cancel);
                var restarted = LocalCluster.Start(victim, state.Launcher);
                state = state with { Processes = state.Processes.Select(p => p.Name == victim.Name ? restarted : p).ToList() };
                LocalCluster.Save(state);
                log($"{clock.Elapsed:mm\\:ss} restarted {victim.Name} (pid {restarted.Pid})");
                var group = state.Processes.Where(p => p.Group == victim.Group).ToList();
                recoveries.Add(Task.Run(async () =>
                {
                    var (seconds, by) = await RecoveryAsync(probe, victim, group, clock, at, cancel);
                    lock (kills) kills[number - 1] = kills[number - 1] with { RecoverySeconds = seconds, RecoveredBy = by };
                    log($"{victim.Name}: {(seconds is null ? "not recovered within 3 min" : $"recovered {seconds:F1} s after the kill ({by})")}");
                }, CancellationToken.None));
            }
            var rest = duration - clock.Elapsed;
            if (rest > TimeSpan.Zero) await Task.Delay(rest, cancel);
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(load);
            await Task.WhenAll(recoveries);
        }

        state = LocalCluster.Load(work);
        var islands = new List<ChaosIsland>();
        foreach (var island in state.Islands)
        {
            var status = await LocalCluster.IslandStatusAsync(probe, island, cancel);
            var checkpoints = Checkpoints(island.Key, Path.Combine(state.Store, island.Key), status);
            islands.Add(checkpoints with { ClusterProblem = await ClusterProblemAsync(probe, [.. island], cancel) });
        }
        var servingProblem = state.Serving.Any() ? await ClusterProblemAsync(probe, [.. state.Serving], cancel) : null;
        var behind = state.Serving.Any() ? await ServingBehindAsync(state, key, cancel) : null;
        return new ChaosReport(clock.Elapsed.TotalSeconds, kills, islands, served, lost.Count, retried, degraded, [.. lost], servingProblem, behind);
    }

    private static async Task<bool> EnsemblePublishedAsync(HttpClient http, IReadOnlyList<ClusterProcess> serving, int experts)
    {
        foreach (var node in serving)
        {
            try
            {
                var answer = await http.GetFromJsonAsync<System.Text.Json.JsonElement>(node.Http + "/v1/experts");
                return answer.GetProperty("router").ValueKind == System.Text.Json.JsonValueKind.Object
                    && answer.GetProperty("experts").EnumerateArray().Count(e => e.GetProperty("available").GetBoolean()) == experts;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
            }
        }
        return false;
    }

    /// <summary>Seconds from the kill until the victim's island trains (or has completed) again, or a serving node is ready again.</summary>
    private static async Task<(double? Seconds, string By)> RecoveryAsync(HttpClient http, ClusterProcess victim, IReadOnlyList<ClusterProcess> group,
        Stopwatch clock, double killedAt, CancellationToken cancel)
    {
        var deadline = clock.Elapsed + TimeSpan.FromMinutes(3);
        while (clock.Elapsed < deadline && !cancel.IsCancellationRequested)
        {
            if (victim.Role == "serving")
            {
                if (await LocalCluster.ReadyAsync(http, victim, cancel)) return (clock.Elapsed.TotalSeconds - killedAt, "restarted node ready");
            }
            else if (await LocalCluster.IslandStatusAsync(http, group, cancel) is { Job: { Phase: "training" or "completed" } job })
            {
                return (clock.Elapsed.TotalSeconds - killedAt, $"{job.Phase} on {job.Node}");
            }
            await Task.Delay(500, CancellationToken.None);
        }
        return (null, "");
    }

    /// <summary>
    /// Null once every serving node's /v1/experts names the manifest each island last published (given a minute, a few
    /// fetch rounds, to catch up); otherwise which node lacks which island's publication.
    /// </summary>
    private static async Task<string?> ServingBehindAsync(ClusterState state, string key, CancellationToken cancel)
    {
        var expected = new Dictionary<string, string>();
        foreach (var island in state.Islands)
        {
            try { expected[island.Key] = PublishedCheckpoint.ReadVerified(Path.Combine(state.Store, island.Key)).Published.ManifestSha256; }
            catch (CheckpointException) { }
        }
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1);
        string problem;
        do
        {
            var lacking = new List<string>();
            foreach (var node in state.Serving)
            {
                try
                {
                    var answer = await http.GetFromJsonAsync<System.Text.Json.JsonElement>(node.Http + "/v1/experts", cancel);
                    var served = answer.GetProperty("experts").EnumerateArray().Append(answer.GetProperty("router"))
                        .Where(e => e.ValueKind == System.Text.Json.JsonValueKind.Object
                            && e.GetProperty("manifestSha256").ValueKind == System.Text.Json.JsonValueKind.String)
                        .Select(e => e.GetProperty("manifestSha256").GetString()).ToHashSet();
                    lacking.AddRange(expected.Where(x => !served.Contains(x.Value))
                        .Select(x => $"{node.Name} does not serve {x.Key}'s publication {x.Value[..12]}…"));
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException or System.Text.Json.JsonException
                    && !cancel.IsCancellationRequested)
                {
                    lacking.Add($"{node.Name} does not answer /v1/experts");
                }
            }
            if (lacking.Count == 0) return null;
            problem = string.Join("; ", lacking);
            await Task.Delay(1000, cancel);
        } while (DateTime.UtcNow < deadline);
        return problem;
    }

    /// <summary>
    /// Null once every node of the group answers GET /cluster/seed-nodes with the same members, all of them the group's
    /// nodes (given a minute to settle after the last restart); otherwise what each node sees.
    /// </summary>
    private static async Task<string?> ClusterProblemAsync(HttpClient http, IReadOnlyList<ClusterProcess> group, CancellationToken cancel)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(1);
        string problem;
        do
        {
            var views = new List<(string Node, SeedNodesAnswer? Answer)>();
            foreach (var node in group)
            {
                try
                {
                    views.Add((node.Name,
                        await http.GetFromJsonAsync<SeedNodesAnswer>(node.Http + ClusterFormation.Route, Diffusion.IO.Json.Options, cancel)));
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancel.IsCancellationRequested)
                {
                    views.Add((node.Name, null));
                }
            }
            var everyone = views.Where(v => v.Answer is not null).Select(v => v.Answer!.Self).Order(StringComparer.Ordinal).ToList();
            if (views.All(v => v.Answer is not null && v.Answer.Members.Order(StringComparer.Ordinal).SequenceEqual(everyone))) return null;
            problem = "not one cluster: " + string.Join("; ", views.Select(v => v.Answer is null ? $"{v.Node} does not answer"
                : $"{v.Node} sees {(v.Answer.Members.Count == 0 ? "no cluster" : string.Join(", ", v.Answer.Members))}"));
            await Task.Delay(1000, cancel);
        } while (DateTime.UtcNow < deadline);
        return problem;
    }

    private static ChaosIsland Checkpoints(string island, string runDirectory, IslandStatus? status)
    {
        var store = new CheckpointStore(runDirectory);
        var listed = store.List();
        var corrupt = new List<string>();
        foreach (var (_, directory) in listed)
        {
            try { CheckpointStore.Verify(directory); }
            catch (CheckpointException e) { corrupt.Add(e.Message); }
        }
        var verified = listed.Count - corrupt.Count;
        var publication = false;
        try
        {
            PublishedCheckpoint.ReadVerified(runDirectory);
            publication = true;
        }
        catch (CheckpointException e)
        {
            corrupt.Add(e.Message);
        }
        var job = status?.Job;
        var reference = job?.LastCheckpoint is null;
        if (job?.LastCheckpoint is { } last)
        {
            try
            {
                CheckpointStore.VerifyReference(Path.Combine(store.Root, last.Checkpoint), last.ManifestSha256);
                reference = true;
            }
            catch (CheckpointException e)
            {
                corrupt.Add($"the journal's last commit {last.Checkpoint} (step {last.Step}) does not match its directory: {e.Message}");
            }
        }
        return new ChaosIsland(island, job?.Phase ?? "unreachable", job?.Step ?? 0, job?.TotalSteps ?? 0, job?.Recoveries ?? 0, listed.Count,
            verified, corrupt, publication, reference, null);
    }
}
