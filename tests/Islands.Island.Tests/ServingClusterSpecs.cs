using Islands.Hosting.Configuration;
using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Islands.Actors.Serving;
using Islands.Diffusion.Checkpoints;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Islands.Island.Tests;

/// <summary>The serving cluster under stress: too many requests, a corrupt publication, and a node killed under load.</summary>
[Collection("islands")]
public sealed class ServingClusterSpecs(ITestOutputHelper output)
{
    private static async Task<JsonElement> Json(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();

    [Fact]
    public async Task Should_answer_429_beyond_the_in_flight_limit_and_still_finish_the_accepted_request()
    {
        var store = await ServingTestStore.StoreAsync();
        await using var cluster = await LocalServing.StartAsync(1, store, "http:maxInFlight=1");
        using var http = ServingTestStore.Client(cluster.Nodes[0].Http);
        using var accepted = await ServingTestStore.PostAsync(http, new { count = 64, steps = 120, async = true });
        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
        var id = (await Json(accepted)).GetProperty("id").GetString();

        using var refused = await ServingTestStore.PostAsync(http, new { count = 1, steps = 2 });
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Equal("application/problem+json", refused.Content.Headers.ContentType?.MediaType);
        Assert.True(refused.Headers.Contains("Retry-After"));

        await IslandTestEnvironment.Eventually(async () =>
        {
            using var get = await http.GetAsync($"/v1/generations/{id}");
            return (await Json(get)).TryGetProperty("images", out var images) && images.GetArrayLength() == 64;
        }, TimeSpan.FromSeconds(120), "the accepted request finishes");
        await IslandTestEnvironment.Eventually(async () =>
        {
            using var again = await ServingTestStore.PostAsync(http, new { count = 1, steps = 2 });
            return again.StatusCode == HttpStatusCode.OK;
        }, TimeSpan.FromSeconds(20), "a new request is served once the slot is free");
    }

    private const int SlowExpertSteps = 16;

    /// <summary>Single-image top-1 generations of seeds 1-24 on a healthy node, by seed.</summary>
    private static readonly Lazy<Task<Dictionary<long, JsonElement>>> HealthyTop1 = new(async () =>
    {
        var healthy = new Dictionary<long, JsonElement>();
        await using var reference = await LocalServing.StartAsync(1, await ServingTestStore.StoreAsync());
        using var http = ServingTestStore.Client(reference.Nodes[0].Http);
        foreach (var seed in Enumerable.Range(1, 24).Select(s => (long)s))
        {
            using var response = await ServingTestStore.PostAsync(http, new { count = 1, steps = SlowExpertSteps, strategy = "top1", seed, format = "json" });
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            healthy[seed] = await Json(response);
        }
        return healthy;
    });

    [Theory]
    [InlineData(3.0)]
    [InlineData(0.0)]
    public async Task Should_keep_the_other_experts_images_moving_while_one_expert_is_slowed_and_serve_the_same_images(double stragglerFactor)
    {
        const int steps = SlowExpertSteps;
        var store = await ServingTestStore.StoreAsync();
        static object Request(long seed, bool async = false) => new { count = 1, steps, strategy = "top1", seed, format = "json", async };
        static byte[] Pixels(JsonElement body) => Diffusion.Imaging.ImageGrid.DecodeGrey(Convert.FromBase64String(body.GetProperty("images")[0].GetString()!)).Item1;

        // A healthy cluster shows where top-1 routing takes each seed's image: the slowed expert is one that some image
        // never visits and another visits at half its steps or more.
        var healthy = await HealthyTop1.Value;
        long Visits(long seed, int expert) => healthy[seed].GetProperty("imageStepsByExpert")[expert].GetInt64();
        var (slowExpert, slowSeed, fastSeed) = Enumerable.Range(0, 4)
            .SelectMany(k => healthy.Keys.Where(s => Visits(s, k) >= steps / 2).SelectMany(slowSeed => healthy.Keys.Where(s => Visits(s, k) == 0)
                .Select(fastSeed => (k, slowSeed, fastSeed))))
            .OrderByDescending(c => Visits(c.slowSeed, c.k)).First();
        output.WriteLine($"slowed expert {slowExpert}: seed {slowSeed} visits it at {Visits(slowSeed, slowExpert)} of {steps} steps, seed {fastSeed} never");

        await using var cluster = await LocalServing.StartAsync(1, store,
            $"stragglerFactor={stragglerFactor.ToString(System.Globalization.CultureInfo.InvariantCulture)}; faults:slowExpert={slowExpert}; " +
            "faults:slowExpertDelay=\"500ms\"");
        using var client = ServingTestStore.Client(cluster.Nodes[0].Http);
        // Loads every expert and gives the router their answer times.
        using (var warm = await ServingTestStore.PostAsync(client, new { count = 2, steps = 3, strategy = "full" }))
            Assert.Equal(HttpStatusCode.OK, warm.StatusCode);

        using var slowPost = await ServingTestStore.PostAsync(client, Request(slowSeed, async: true));
        Assert.Equal(HttpStatusCode.Accepted, slowPost.StatusCode);
        var slowId = (await Json(slowPost)).GetProperty("id").GetString();
        async Task<JsonElement> Slow()
        {
            using var get = await client.GetAsync($"/v1/generations/{slowId}");
            return await Json(get);
        }
        int SlowStep(JsonElement body) => body.TryGetProperty("images", out _) ? steps : body.GetProperty("step").GetInt32();
        await IslandTestEnvironment.Eventually(async () => SlowStep(await Slow()) >= 1, TimeSpan.FromSeconds(30), "the slowed expert's generation is under way");

        using var fast = await ServingTestStore.PostAsync(client, Request(fastSeed));
        var slowStepThen = SlowStep(await Slow());
        Assert.Equal(HttpStatusCode.OK, fast.StatusCode);
        output.WriteLine($"straggler-factor {stragglerFactor}: the slowed generation was at step {slowStepThen}/{steps} when the other one finished");
        if (stragglerFactor > 0)
            Assert.True(slowStepThen < steps, $"the image that never visits expert {slowExpert} waited for it: the slowed generation had finished before it");
        else
            Assert.True(slowStepThen == steps, $"with straggler-factor 0 every step waits for all its experts, yet the slowed generation was only at step {slowStepThen}/{steps}");

        // The slowed expert changed when the images came, never what they are: both match the healthy cluster's.
        JsonElement slow = default;
        await IslandTestEnvironment.Eventually(async () => (slow = await Slow()).TryGetProperty("images", out _), TimeSpan.FromSeconds(60), "the slowed generation completes");
        foreach (var (seed, body) in new[] { (fastSeed, await Json(fast)), (slowSeed, slow) })
        {
            var pixels = Pixels(body);
            Assert.True(pixels.Max() - pixels.Min() >= 32, $"seed {seed}: a served image is flat: pixel range {pixels.Min()}..{pixels.Max()}");
            var difference = pixels.Zip(Pixels(healthy[seed]), (a, b) => Math.Abs(a - b)).Max();
            Assert.True(difference <= 2, $"seed {seed}: the image differs from the healthy cluster's by {difference} grey levels");
            Assert.Empty(body.GetProperty("leftOutExperts").EnumerateArray());
            Assert.Equal(0, body.GetProperty("retriedImageSteps").GetInt32());
            Assert.Equal(Visits(seed, slowExpert), body.GetProperty("imageStepsByExpert")[slowExpert].GetInt64());
        }
    }

    [Fact]
    public async Task Should_measure_served_heun_sampling_against_offline_heun_with_bench_serve()
    {
        var store = await ServingTestStore.StoreAsync();
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = await Islands.Cli.IslandsCli.RunAsync(["bench", "serve", "--store", store, "--clients", "2", "--seconds", "2", "--steps", "4", "--count", "1",
            "--sampler", "heun", "--threads", "2", "--json"], stdout, stderr);
        Assert.True(code == 0, stderr.ToString());
        var result = JsonDocument.Parse(stdout.ToString()).RootElement;
        Assert.True(result.GetProperty("offlineImagesPerSecond").GetDouble() > 0);
        var served = result.GetProperty("served").EnumerateArray().Single();
        Assert.True(served.GetProperty("requests").GetInt32() > 0, served.ToString());
        Assert.Equal(0, served.GetProperty("failed").GetInt32());
        Assert.True(served.GetProperty("imagesPerSecond").GetDouble() > 0);
    }

    [Fact]
    public async Task Should_measure_served_latency_healthy_and_with_one_expert_slowed_with_bench_serve()
    {
        var store = await ServingTestStore.StoreAsync();
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = await Islands.Cli.IslandsCli.RunAsync(["bench", "serve", "--store", store, "--clients", "2", "--seconds", "2", "--steps", "4", "--count", "1",
            "--slow-expert", "1", "--slow-by", "200ms", "--threads", "2", "--json"], stdout, stderr);
        output.WriteLine(stderr.ToString());
        Assert.True(code == 0, stderr.ToString());
        var result = JsonDocument.Parse(stdout.ToString()).RootElement;
        Assert.Equal(1, result.GetProperty("slowExpert").GetInt32());
        var phases = result.GetProperty("phases").EnumerateArray().ToList();
        Assert.Equal(["healthy", "slowed, straggler-factor 0", "slowed, straggler-factor 3"], phases.Select(p => p.GetProperty("phase").GetString()));
        Assert.Equal([false, true, true], phases.Select(p => p.GetProperty("slowed").GetBoolean()));
        Assert.All(phases, p =>
        {
            Assert.True(p.GetProperty("requests").GetInt32() > 0, p.ToString());
            Assert.Equal(0, p.GetProperty("failed").GetInt32());
            Assert.True(p.GetProperty("p99Seconds").GetDouble() >= p.GetProperty("p50Seconds").GetDouble() && p.GetProperty("p50Seconds").GetDouble() > 0, p.ToString());
        });
        Assert.True(double.IsFinite(result.GetProperty("p99OverLockstep").GetDouble()));

        var unknown = await Islands.Cli.IslandsCli.RunAsync(["bench", "serve", "--store", store, "--slow-expert", "7", "--threads", "2"], new StringWriter(), stderr = new StringWriter());
        Assert.NotEqual(0, unknown);
        Assert.Contains("--slow-expert", stderr.ToString());
        Assert.Contains("not a published expert", stderr.ToString());
    }

    [Fact]
    public async Task Should_never_load_a_corrupt_publication_and_serve_degraded_without_it()
    {
        var store = await ServingTestStore.CopyAsync();
        var weights = Directory.GetFiles(Path.Combine(store, "expert-2"), "ema.bin", SearchOption.AllDirectories).Single();
        var bytes = await File.ReadAllBytesAsync(weights);
        bytes[bytes.Length / 2] ^= 0xFF;
        await File.WriteAllBytesAsync(weights, bytes);

        await using var cluster = await LocalServing.StartAsync(1, store);
        using var http = ServingTestStore.Client(cluster.Nodes[0].Http);
        var experts = await Json(await http.GetAsync("/v1/experts"));
        var expert2 = experts.GetProperty("experts").EnumerateArray().Single(e => e.GetProperty("expert").GetInt32() == 2);
        Assert.False(expert2.GetProperty("available").GetBoolean());
        Assert.Contains(experts.GetProperty("refused").EnumerateArray(), r => r.GetString()!.Contains("ema.bin", StringComparison.Ordinal));

        using var response = await ServingTestStore.PostAsync(http, new { count = 4, steps = 4, strategy = "full", format = "json" });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await Json(response);
        Assert.Equal(0, body.GetProperty("imageStepsByExpert")[2].GetInt64());
        Assert.DoesNotContain(body.GetProperty("checkpoints").EnumerateArray(), c => c.GetProperty("job").GetString() == "expert:2");
    }

    [Theory]
    [InlineData(SamplerActor.RegionName)]
    [InlineData(EnsembleRouterActor.RegionName)]
    public async Task Should_lose_no_accepted_request_when_a_node_hosting_a_sampler_or_the_router_is_killed_under_load(string hosted)
    {
        var store = await ServingTestStore.StoreAsync();
        await using var cluster = await LocalServing.StartAsync(3, store,
            "expertDeadline=\"2s\"; expertCooldown=\"2s\"; progressTimeout=\"5s\"; batching:maxWait=\"5ms\"");
        // Full routing asks every expert, so all four sampler entities start somewhere in the cluster.
        using (var warm = ServingTestStore.Client(cluster.Nodes[0].Http))
            Assert.Equal(HttpStatusCode.OK, (await ServingTestStore.PostAsync(warm, new { count = 2, steps = 2, strategy = "full" })).StatusCode);
        var hosting = new Dictionary<LocalServingNode, string[]>();
        var routerHost = new HashSet<LocalServingNode>();
        foreach (var node in cluster.Nodes)
        {
            var samplers = await node.App.Services.GetRequiredService<IRequiredActor<SamplerActor>>().GetAsync();
            var routers = await node.App.Services.GetRequiredService<IRequiredActor<EnsembleRouterActor>>().GetAsync();
            var samplerState = await samplers.Ask<CurrentShardRegionState>(GetShardRegionState.Instance, TimeSpan.FromSeconds(5));
            var routerState = await routers.Ask<CurrentShardRegionState>(GetShardRegionState.Instance, TimeSpan.FromSeconds(5));
            var routerEntities = routerState.Shards.SelectMany(s => s.EntityIds).ToArray();
            if (routerEntities.Length > 0) routerHost.Add(node);
            hosting[node] = hosted == SamplerActor.RegionName ? [.. samplerState.Shards.SelectMany(s => s.EntityIds)] : routerEntities;
        }
        // Killing the router's node too would make waiting requests re-send to a fresh router, which may only start
        // once sharding has already moved the samplers: then nothing is degraded. Prefer a node without the router.
        var victim = hosting.Where(h => h.Value.Length > 0)
            .OrderBy(h => hosted == SamplerActor.RegionName && routerHost.Contains(h.Key) ? 1 : 0)
            .ThenByDescending(h => h.Value.Length).First().Key;
        var victimHostsBoth = hosted == SamplerActor.RegionName && routerHost.Contains(victim);
        var survivors = cluster.Nodes.Where(n => n != victim).ToList();
        output.WriteLine($"{hosted}s: {string.Join("; ", hosting.Select(h => $"{h.Key.Address}: {string.Join(",", h.Value)}"))}; router on {string.Join(",", routerHost.Select(n => n.Address))}; killing {victim.Address}");

        var outcomes = new ConcurrentBag<(HttpStatusCode Status, int LeftOut, int Retries, string Detail)>();
        using var stop = new CancellationTokenSource();
        long killedAtTicks = long.MaxValue;
        var servedAfterKill = new ConcurrentDictionary<int, int>();
        var clients = Enumerable.Range(0, 6).Select(c => Task.Run(async () =>
        {
            using var http = ServingTestStore.Client(survivors[c % survivors.Count].Http);
            while (!stop.IsCancellationRequested)
            {
                var sentAfterKill = System.Diagnostics.Stopwatch.GetTimestamp() > Interlocked.Read(ref killedAtTicks);
                using var response = await ServingTestStore.PostAsync(http, new { count = 4, steps = 12, strategy = c % 2 == 0 ? "top1" : "full", format = "json" });
                var body = await Json(response);
                outcomes.Add(response.StatusCode == HttpStatusCode.OK
                    ? (response.StatusCode, body.GetProperty("leftOutExperts").GetArrayLength(), body.GetProperty("retries").GetInt32(), "")
                    : (response.StatusCode, 0, 0, body.ToString()));
                if (sentAfterKill && response.StatusCode == HttpStatusCode.OK) servedAfterKill.AddOrUpdate(c, 1, (_, n) => n + 1);
            }
        })).ToList();

        await Task.Delay(TimeSpan.FromSeconds(3));
        var before = outcomes.Count;
        await victim.KillAsync();
        Interlocked.Exchange(ref killedAtTicks, System.Diagnostics.Stopwatch.GetTimestamp());
        // Stay under load through failure detection and the shards' move; then, however slow this machine is, wait
        // until every client has had a request that it sent after the kill answered.
        await Task.Delay(TimeSpan.FromSeconds(25));
        await IslandTestEnvironment.Eventually(() => Task.FromResult(servedAfterKill.Count == 6), TimeSpan.FromSeconds(120),
            "every client served a request sent after the kill");
        await stop.CancelAsync();
        await Task.WhenAll(clients);

        var all = outcomes.ToList();
        output.WriteLine($"{all.Count} requests ({before} before the kill): {all.Count(o => o.LeftOut > 0)} degraded, {all.Count(o => o.Retries > 0)} retried");
        Assert.All(all, o => Assert.True(o.Status == HttpStatusCode.OK, $"{o.Status}: {o.Detail}"));
        // A dead sampler leaves its expert out of some steps; a dead router makes waiting requests re-send themselves.
        if (hosted == SamplerActor.RegionName && !victimHostsBoth) Assert.Contains(all, o => o.LeftOut > 0);
        else if (victimHostsBoth) Assert.Contains(all, o => o.LeftOut > 0 || o.Retries > 0);
        else Assert.Contains(all, o => o.Retries > 0);

        // Once sharding has moved the dead node's samplers, full routing is answered by every expert again.
        using var probe = ServingTestStore.Client(survivors[0].Http);
        await IslandTestEnvironment.Eventually(async () =>
        {
            using var response = await ServingTestStore.PostAsync(probe, new { count = 2, steps = 3, strategy = "full", format = "json" });
            var body = await Json(response);
            return response.StatusCode == HttpStatusCode.OK && body.GetProperty("leftOutExperts").GetArrayLength() == 0
                && body.GetProperty("checkpoints").EnumerateArray().Count(c => c.GetProperty("job").GetString()!.StartsWith("expert:", StringComparison.Ordinal)) == 4;
        }, TimeSpan.FromSeconds(60), "full service after rebalancing");
    }

    [Fact]
    public async Task Should_pick_up_an_islands_new_publication_at_once_when_the_island_announces_it()
    {
        var store = await ServingTestStore.CopyAsync();
        await using var serving = await LocalServing.StartAsync(1, store, "rescanInterval=\"10m\"");
        using var http = ServingTestStore.Client(serving.Nodes[0].Http);
        var receptionist = $"{serving.Nodes[0].Address}/system/receptionist";

        var (data, partitions) = await IslandTestEnvironment.DatasetAsync();
        var config = Path.Combine(store, "announcing.json");
        await File.WriteAllTextAsync(config, IslandTestEnvironment.NodeConfig(data, partitions, steps: 25, ("servingContacts", new[] { receptionist })));
        await using var island = await LocalIsland.StartAsync("announcing", 1, store, await File.ReadAllTextAsync(config), "sqlite", null, job: "expert:1");
        // The registry would not rescan for 10 minutes: only the island's announcement can make expert 1 come from it.
        await IslandTestEnvironment.Eventually(async () =>
        {
            var experts = await Json(await http.GetAsync("/v1/experts"));
            return experts.GetProperty("experts")[1].GetProperty("island").GetString() == "announcing";
        }, TimeSpan.FromSeconds(90), "serving lists expert 1 from the announcing island");
        using var response = await ServingTestStore.PostAsync(http, new { count = 2, steps = 3, strategy = "full", format = "json" });
        var body = await Json(response);
        var expert1 = body.GetProperty("checkpoints").EnumerateArray().Single(c => c.GetProperty("job").GetString() == "expert:1");
        Assert.Equal(25, expert1.GetProperty("step").GetInt64());
    }

    [Fact]
    public async Task With_tls_serving_nodes_with_the_serving_certificate_form_one_cluster_a_stranger_never_joins_and_a_trusted_island_announces_over_tls()
    {
        var store = await ServingTestStore.CopyAsync();
        var certificates = IslandTestEnvironment.TempDir("serving-tls");
        var servingCertificate = IslandTestEnvironment.SelfSignedCertificate(Path.Combine(certificates, "serving.pfx"), "CN=serving");
        var islandCertificate = IslandTestEnvironment.SelfSignedCertificate(Path.Combine(certificates, "island.pfx"), "CN=island");
        var strangerCertificate = IslandTestEnvironment.SelfSignedCertificate(Path.Combine(certificates, "stranger.pfx"), "CN=stranger");
        var trusted = $"[\"{IslandTestEnvironment.Thumbprint(servingCertificate)}\", \"{IslandTestEnvironment.Thumbprint(islandCertificate)}\"]";
        string Tls(string certificate) => $"tls:enabled=true; tls:certificate={JsonSerializer.Serialize(certificate)}; tls:password=\"pw\"; " +
            $"tls:trustedThumbprints={trusted}; rescanInterval=\"10m\"";
        var name = "tls" + Guid.NewGuid().ToString("N")[..6];
        await using var serving = await LocalServing.StartAsync(2, store, Tls(servingCertificate), name, protocol: "akka.ssl.tcp");
        Assert.StartsWith("akka.ssl.tcp://", serving.Nodes[0].Address);

        // A node with a certificate serving does not trust (it trusts serving's, so only serving's check can keep it out).
        var strangerConfig = Path.Combine(store, $"serving-{name}-stranger.json");
        await File.WriteAllTextAsync(strangerConfig, ConfigurationJson.From(IslandTestEnvironment.Pairs("islands:serving",
            $"name=\"{name}\"; http:port=0; apiKeys=[\"{ServingTestStore.ApiKey}\"]; splitBrain:stableAfter=\"5s\"; {Tls(strangerCertificate)}")));
        var seeds = string.Join(",", serving.Nodes.Select(n => n.Address));
        var strangerPort = IslandTestEnvironment.FreePort();
        var stranger = await IslandTestEnvironment.StartOutsiderAsync(() => LocalServing.StartNodeAsync(strangerConfig, store, strangerPort, seeds));
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(15));
            var members = Akka.Cluster.Cluster.Get(serving.Nodes[0].System).State.Members;
            output.WriteLine($"serving sees: {string.Join(", ", members.Select(m => $"{m.Address} {m.Status}"))}; the stranger {(stranger is null ? "shut itself down" : "stayed outside")}");
            Assert.Equal(2, members.Count(m => m.Status == Akka.Cluster.MemberStatus.Up));
            Assert.DoesNotContain(members, m => m.Address.Port == strangerPort);
            if (stranger is not null)
                Assert.DoesNotContain(Akka.Cluster.Cluster.Get(stranger.System).State.Members, m => m.Status == Akka.Cluster.MemberStatus.Up);
        }
        finally
        {
            if (stranger is not null)
            {
                await stranger.KillAsync();
                await stranger.App.DisposeAsync();
            }
        }

        // An island over TLS with a certificate serving trusts: its announcement is the only way expert 1 can change, and
        // it reaches every serving node's registry, not only the one behind the receptionist it contacted.
        var clients = serving.Nodes.Select(n => ServingTestStore.Client(n.Http)).ToList();
        var (data, partitions) = await IslandTestEnvironment.DatasetAsync();
        var islandTls = IslandTestEnvironment.Pairs("", $"tls:enabled=true; tls:certificate={JsonSerializer.Serialize(islandCertificate)}; " +
            $"tls:password=\"pw\"; tls:trustedThumbprints={trusted}; servingContacts=[\"{serving.Nodes[1].Address}/system/receptionist\"]");
        await using var island = await LocalIsland.StartAsync("announcing-tls", 1, store, IslandTestEnvironment.NodeConfig(data, partitions, steps: 25, islandTls),
            "sqlite", null, job: "expert:1");
        foreach (var (http, index) in clients.Select((c, i) => (c, i)))
        {
            await IslandTestEnvironment.Eventually(async () =>
            {
                var experts = await Json(await http.GetAsync("/v1/experts"));
                return experts.GetProperty("experts")[1].GetProperty("island").GetString() == "announcing-tls";
            }, TimeSpan.FromSeconds(90), $"serving node {index} lists expert 1 from the island that announced it over TLS");
            http.Dispose();
        }
    }

    [Fact]
    public async Task Should_delete_stored_results_past_their_retention_and_keep_answering_from_the_rest()
    {
        var store = await ServingTestStore.StoreAsync();
        var results = IslandTestEnvironment.TempDir("results");
        GenerationCompleted Stored(string id) => new(id, "default", new GenerationRequest(1, null, 2, 1, "top1", 5), "hash", 1, 2, 2, 4, [], [[0, 1]], 0, 0.1, 0.2,
            [], DateTimeOffset.UtcNow) { Payload = [0, 64, 128, 255] };
        var oldId = "g" + new string('0', 32);
        var freshId = "g" + new string('0', 31) + "1";
        var oldFile = Path.Combine(results, oldId + ".bin");
        await File.WriteAllBytesAsync(oldFile, Islands.Actors.IslandsSerializer.Encode(Stored(oldId)));
        File.SetLastWriteTimeUtc(oldFile, DateTime.UtcNow.AddDays(-3));
        await File.WriteAllBytesAsync(Path.Combine(results, freshId + ".bin"), Islands.Actors.IslandsSerializer.Encode(Stored(freshId)));

        await using var cluster = await LocalServing.StartAsync(1, store, $"results={JsonSerializer.Serialize(results)}; resultsRetention=\"1d\"");
        using var http = ServingTestStore.Client(cluster.Nodes[0].Http);
        // The router entity starts with the first request and sweeps the directory.
        Assert.Equal(HttpStatusCode.OK, (await ServingTestStore.PostAsync(http, new { count = 1, steps = 2 })).StatusCode);
        await IslandTestEnvironment.Eventually(() => Task.FromResult(!File.Exists(oldFile)), TimeSpan.FromSeconds(20), "the 3-day-old result is deleted");
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync($"/v1/generations/{oldId}")).StatusCode);
        var fresh = await Json(await http.GetAsync($"/v1/generations/{freshId}"));
        Assert.Equal(freshId, fresh.GetProperty("id").GetString());
        Assert.Equal(1, fresh.GetProperty("images").GetArrayLength());
    }

    [Fact]
    public async Task Should_keep_serving_the_previous_good_expert_when_its_island_publishes_non_finite_weights()
    {
        var store = await ServingTestStore.CopyAsync();
        await using var cluster = await LocalServing.StartAsync(1, store, "rescanInterval=\"1s\"");
        using var http = ServingTestStore.Client(cluster.Nodes[0].Http);
        async Task<JsonElement> Generate()
        {
            using var response = await ServingTestStore.PostAsync(http, new { count = 4, steps = 3, strategy = "full", format = "json", seed = 5 });
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return await Json(response);
        }
        static long Expert1Step(JsonElement body) =>
            body.GetProperty("checkpoints").EnumerateArray().Single(c => c.GetProperty("job").GetString() == "expert:1").GetProperty("step").GetInt64();
        var before = await Generate();
        Assert.Equal(20, Expert1Step(before));

        // Expert 1's island publishes a newer checkpoint whose weights hold NaN (a writer without the guard, or bits
        // flipped before hashing): hashes match, so only the finiteness check can refuse it.
        var run = Path.Combine(store, "expert-1");
        var config = new Diffusion.Training.RunDirectory(run).LoadConfig();
        using var model = config.ModelOrDefault.Build();
        var good = new CheckpointStore(run).List()[0].Directory;
        model.load(Path.Combine(good, Diffusion.Training.ExpertTrainer.EmaFile));
        using (TorchSharp.torch.no_grad()) model.parameters().First().fill_(float.NaN);
        var bad = new CheckpointStore(run).Commit(21, 0.5f, dir =>
        {
            model.save(Path.Combine(dir, Diffusion.Training.ExpertTrainer.ModelFile));
            model.save(Path.Combine(dir, Diffusion.Training.ExpertTrainer.EmaFile));
        });
        var manifest = Diffusion.IO.Json.Read<CheckpointManifest>(Path.Combine(bad.Directory, CheckpointManifest.FileName));
        Diffusion.IO.Json.WriteAtomic(Path.Combine(run, PublishedCheckpoint.FileName), new PublishedCheckpoint(PublishedCheckpoint.CurrentSchemaVersion,
            "expert:1", "expert-1", 21, Path.GetRelativePath(run, bad.Directory), bad.ManifestSha256, manifest.Files, 0.5f, DateTimeOffset.UtcNow));

        await IslandTestEnvironment.Eventually(async () =>
        {
            var experts = await Json(await http.GetAsync("/v1/experts"));
            return experts.GetProperty("refused").EnumerateArray().Any(r => r.GetString()!.Contains("not finite"));
        }, TimeSpan.FromSeconds(30), "serving lists the NaN publication among the refused");
        var after = await Generate();
        Assert.Equal(20, Expert1Step(after));
        Assert.Equal(0, after.GetProperty("nonFiniteImages").GetInt32());
        foreach (var image in after.GetProperty("images").EnumerateArray())
        {
            var (pixels, _, _) = Diffusion.Imaging.ImageGrid.DecodeGrey(Convert.FromBase64String(image.GetString()!));
            Assert.True(pixels.Max() - pixels.Min() >= 32, $"a served image is flat: pixel range {pixels.Min()}..{pixels.Max()}");
        }
    }
}
