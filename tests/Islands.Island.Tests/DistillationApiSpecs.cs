using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Hosting;
using Islands.Actors.Serving;
using Islands.Diffusion.Distillation;
using Microsoft.Extensions.DependencyInjection;
using Islands.Diffusion.Imaging;
using Xunit.Abstractions;

namespace Islands.Island.Tests;

/// <summary>Three in-process serving nodes over the published test store (experts that learned the degraded condition).</summary>
public sealed class ServingClusterFixture : IAsyncLifetime
{
    public LocalServing Cluster { get; private set; } = null!;
    public string Store { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Store = await ServingTestStore.StoreAsync();
        Cluster = await LocalServing.StartAsync(3, Store,
            "expertDeadline=\"2s\"; expertCooldown=\"2s\"; progressTimeout=\"5s\"; requestTimeout=\"20s\"; batching:maxWait=\"2ms\"");
    }

    public async Task DisposeAsync() => await Cluster.DisposeAsync();
}

/// <summary>
/// POST /v1/distillations as a client sees it: a served job equals the offline run for the same seed (its score
/// queries go through the cluster's router and sampler entities), streams progress with its stage and a preview, is
/// idempotent by key, survives a killed node, can be cancelled, and refuses every bad field naming it.
/// </summary>
[Collection("islands")]
public sealed class DistillationApiSpecs(ServingClusterFixture fixture, ITestOutputHelper output) : IClassFixture<ServingClusterFixture>
{
    private static object Bridge(int steps, int seed) => new
    {
        mode = "bridge", @class = "Sneaker", count = 4, steps, switchStep = steps / 2, guidance = 5, seed, checkpointEvery = 10,
    };

    private static async Task<JsonElement> Json(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();

    private static async Task<HttpResponseMessage> PostAsync(HttpClient http, object body, string? key = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/distillations") { Content = JsonContent.Create(body) };
        if (key is not null) request.Headers.Add("Idempotency-Key", key);
        return await http.SendAsync(request);
    }

    /// <summary>The job's server-sent events until it ends: (event, data) pairs.</summary>
    private static async Task<List<(string Event, JsonElement Data)>> EventsAsync(HttpClient http, string id)
    {
        var events = new List<(string, JsonElement)>();
        using var stream = await http.GetStreamAsync($"/v1/distillations/{id}/events");
        await foreach (var item in System.Net.ServerSentEvents.SseParser.Create(stream).EnumerateAsync())
            events.Add((item.EventType, JsonDocument.Parse(item.Data).RootElement.Clone()));
        return events;
    }

    [Fact]
    public async Task Should_serve_a_bridge_distillation_equal_to_the_offline_run_with_progress_stages_a_preview_and_a_trajectory()
    {
        var node = fixture.Cluster.Nodes.First(n => n.Alive);
        using var http = ServingTestStore.Client(node.Http);
        var key = "bridge-" + Guid.NewGuid().ToString("N");
        using var accepted = await PostAsync(http, Bridge(20, 3), key);
        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
        var id = (await Json(accepted)).GetProperty("id").GetString()!;
        using (var again = await PostAsync(http, Bridge(20, 3), key))
        {
            Assert.Equal(HttpStatusCode.Accepted, again.StatusCode);
            Assert.Equal(id, (await Json(again)).GetProperty("id").GetString());
        }
        using (var conflict = await PostAsync(http, Bridge(20, 4), key)) Assert.Equal((HttpStatusCode)422, conflict.StatusCode);

        var events = await EventsAsync(http, id);
        Assert.Equal("completed", events[^1].Event);
        var progress = events.Where(e => e.Event == "progress").Select(e => e.Data).ToList();
        Assert.Contains(progress, p => p.GetProperty("stage").GetString() == "sds");
        Assert.Contains(progress, p => p.GetProperty("stage").GetString() == "calibrated");
        Assert.All(progress, p => Assert.Equal((byte)'P', Convert.FromBase64String(p.GetProperty("preview").GetString()!)[1]));
        Assert.Equal(20, events[^1].Data.GetProperty("step").GetInt64());

        var served = await http.GetByteArrayAsync($"/v1/distillations/{id}/grid.png");
        var gif = await http.GetByteArrayAsync($"/v1/distillations/{id}/trajectory.gif");
        Assert.Equal("GIF89a", Encoding.ASCII.GetString(gif[..6]));
        var summary = JsonDocument.Parse(await http.GetStringAsync($"/v1/distillations/{id}/summary.json")).RootElement;
        Assert.True(summary.GetProperty("completed").GetBoolean());
        Assert.True(double.IsFinite(summary.GetProperty("finalDirection").GetDouble()));

        // The same run offline, the store's experts and router loaded in this process.
        var offlineRun = IslandTestEnvironment.TempDir("distill-offline");
        var config = new DistillConfig(Job: "bridge", Store: fixture.Store, TargetClass: 7, Count: 4, Steps: 20, SwitchStep: 10, Guidance: 5, Seed: 3,
            CheckpointEvery: 10);
        DistillationRun.Execute(config, offlineRun, options: new DistillationOptions { Evaluate = false });
        var offline = File.ReadAllBytes(Path.Combine(offlineRun, DistillationRun.GridFile));
        var (a, _, _) = ImageGrid.DecodeGrey(served);
        var (b, _, _) = ImageGrid.DecodeGrey(offline);
        Assert.Equal(b.Length, a.Length);
        var worst = a.Zip(b, (x, y) => Math.Abs(x - y)).Max();
        Assert.True(worst <= 2, $"served and offline distillations differ by up to {worst} of 255");
        Assert.True(a.Max() - a.Min() >= 32, $"the distilled images are flat ({a.Min()}..{a.Max()})");
        var start = DistillationRun.Encode(TorchSharp.torch.zeros(4, 1, 28, 28));
        Assert.NotEqual(ImageGrid.DecodeGrey(start).Pixels, a);
    }

    [Fact]
    public async Task Should_finish_a_distillation_when_the_router_node_is_killed_adopt_the_killed_nodes_own_job_and_cancel_from_another_node()
    {
        var alive = fixture.Cluster.Nodes.Where(n => n.Alive).ToList();
        // A generation starts the router entity somewhere; the job runs on another node, and the router's node is killed.
        using (var warm = ServingTestStore.Client(alive[0].Http))
            Assert.Equal(HttpStatusCode.OK, (await ServingTestStore.PostAsync(warm, new { count = 2, steps = 2, strategy = "full" })).StatusCode);
        var routerHost = alive[0];
        foreach (var node in alive)
        {
            var routers = await node.App.Services.GetRequiredService<IRequiredActor<EnsembleRouterActor>>().GetAsync();
            var state = await routers.Ask<CurrentShardRegionState>(GetShardRegionState.Instance, TimeSpan.FromSeconds(5));
            if (state.Shards.Any(s => s.EntityIds.Count > 0)) routerHost = node;
        }
        var home = alive.First(n => n != routerHost);
        using var http = ServingTestStore.Client(home.Http);
        using var accepted = await PostAsync(http, Bridge(300, 5));
        var id = (await Json(accepted)).GetProperty("id").GetString()!;
        using var doomed = await PostAsync(http, Bridge(4000, 6));
        var doomedId = (await Json(doomed)).GetProperty("id").GetString()!;
        // A job accepted by the node that will be killed: the shared results directory lets a survivor adopt it.
        string orphanId;
        using (var victimHttp = ServingTestStore.Client(routerHost.Http))
        using (var orphan = await PostAsync(victimHttp, Bridge(60, 7)))
            orphanId = (await Json(orphan)).GetProperty("id").GetString()!;
        await IslandTestEnvironment.Eventually(async () =>
            (await Json(await http.GetAsync($"/v1/distillations/{id}"))).GetProperty("step").GetInt64() >= 10, TimeSpan.FromSeconds(60), "10 steps done");
        var victim = routerHost;
        output.WriteLine($"killing {victim.Address} (the router's node, running {orphanId}) while {id} runs on {home.Address}");
        await victim.KillAsync();

        // Cancelled through the third node, which does not run it: the marker reaches the job on its own node.
        var third = fixture.Cluster.Nodes.First(n => n.Alive && n != home);
        using (var thirdHttp = ServingTestStore.Client(third.Http))
        using (var cancel = await thirdHttp.DeleteAsync($"/v1/distillations/{doomedId}"))
            Assert.Equal(HttpStatusCode.Accepted, cancel.StatusCode);
        var events = await EventsAsync(http, id);
        var end = events[^1];
        output.WriteLine($"{end.Event}: {end.Data}");
        Assert.Equal("completed", end.Event);
        Assert.Equal(300, end.Data.GetProperty("step").GetInt64());
        // The kill was felt: score queries were sent again once the router's shard moved, or rows were degraded.
        Assert.True(end.Data.GetProperty("retries").GetInt32() + end.Data.GetProperty("degradedRows").GetInt64() > 0, end.Data.ToString());
        var (pixels, _, _) = ImageGrid.DecodeGrey(await http.GetByteArrayAsync($"/v1/distillations/{id}/grid.png"));
        Assert.True(pixels.Max() - pixels.Min() >= 32, "the distilled images are flat");
        await IslandTestEnvironment.Eventually(async () =>
            (await Json(await http.GetAsync($"/v1/distillations/{doomedId}"))).GetProperty("status").GetString() == "cancelled",
            TimeSpan.FromSeconds(30), "the cancelled job reports cancelled");
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync($"/v1/distillations/{doomedId}/grid.png")).StatusCode);

        // The killed node's job was not lost: one survivor took it over and finished it from its checkpoint.
        var adopted = await EventsAsync(http, orphanId);
        output.WriteLine($"{orphanId}: {adopted[^1].Event}: {adopted[^1].Data}");
        Assert.Equal("completed", adopted[^1].Event);
        Assert.Equal(60, adopted[^1].Data.GetProperty("step").GetInt64());
        var owner = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(fixture.Cluster.ResultsDirectory, "distillations", orphanId,
            "owner.json"))).RootElement;
        Assert.NotEqual(victim.Address, owner.GetProperty("address").GetString());
        Assert.Single(Directory.GetFiles(Path.Combine(fixture.Cluster.ResultsDirectory, "distillations", orphanId), "claimed-*"));
    }

    [Fact]
    public async Task Should_run_islands_distill_illusion_with_url_as_a_served_job_write_its_results_and_follow_the_same_job_when_rerun()
    {
        var node = fixture.Cluster.Nodes.First(n => n.Alive);
        var run = IslandTestEnvironment.TempDir("distill-url");
        string[] args = ["distill", "illusion", "--url", node.Http, "--class", "Trouser", "--turned", "Bag", "--mode", "bridge", "--count", "4",
            "--steps", "20", "--guidance", "5", "--no-evaluate", "--out", run, "--json"];
        var previous = Environment.GetEnvironmentVariable("ISLANDS_API_KEY");
        Environment.SetEnvironmentVariable("ISLANDS_API_KEY", ServingTestStore.ApiKey);
        try
        {
            var (code, stdout, stderr) = await Cli(args);
            Assert.True(code == 0, stderr);
            var result = JsonDocument.Parse(stdout).RootElement;
            var id = result.GetProperty("id").GetString()!;
            var summary = result.GetProperty("summary");
            Assert.Equal("illusion", summary.GetProperty("task").GetString());
            Assert.Equal(20, summary.GetProperty("step").GetInt64());
            Assert.True(summary.GetProperty("completed").GetBoolean());
            foreach (var file in new[] { "grid.png", "trajectory.gif", "summary.json", "remote.json" })
                Assert.True(File.Exists(Path.Combine(run, file)), $"{file} is missing from --out");
            var (pixels, _, _) = ImageGrid.DecodeGrey(File.ReadAllBytes(Path.Combine(run, "grid.png")));
            Assert.True(pixels.Max() - pixels.Min() >= 32, "the distilled images are flat");

            // Rerun: the same key, so the same (finished) job answers; no second job is computed.
            var again = await Cli(args);
            Assert.True(again.Code == 0, again.Err);
            Assert.Equal(id, JsonDocument.Parse(again.Out).RootElement.GetProperty("id").GetString());

            var bad = await Cli(["distill", "class", "--url", node.Http, "--class", "Spaceship", "--out", IslandTestEnvironment.TempDir("bad"), "--no-evaluate"]);
            Assert.NotEqual(0, bad.Code);
            Assert.Contains("class:", bad.Err);
            var neither = await Cli(["distill", "class", "--class", "Sneaker", "--out", IslandTestEnvironment.TempDir("bad")]);
            Assert.NotEqual(0, neither.Code);
            Assert.Contains("--store", neither.Err);
        }
        finally
        {
            Environment.SetEnvironmentVariable("ISLANDS_API_KEY", previous);
        }
    }

    private static async Task<(int Code, string Out, string Err)> Cli(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = await Islands.Cli.IslandsCli.RunAsync(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Theory]
    [InlineData("""{"class":7,"mode":"dsd"}""", "mode", "sds, nfsd, bridge")]
    [InlineData("""{"class":7,"steps":0}""", "steps", "1 to 100000")]
    [InlineData("""{"class":7,"tMin":0.5,"tMax":0.2}""", "tMax", "tMin")]
    [InlineData("""{"class":7,"guidance":500}""", "guidance", "0 to 200")]
    [InlineData("""{"class":7,"channels":3}""", "channels", "1×28×28")]
    [InlineData("""{"class":7,"height":32}""", "height", "must be 28")]
    [InlineData("""{"class":12}""", "class", "0 to 9")]
    [InlineData("""{"class":"Spaceship"}""", "class", "Sneaker")]
    [InlineData("""{"mode":"sds"}""", "class", "required")]
    [InlineData("""{"class":7,"task":"translate"}""", "from", "required")]
    [InlineData("""{"class":7,"task":"illusion"}""", "turned", "required")]
    [InlineData("""{"class":7,"mode":"bridge","switchStep":900,"steps":100}""", "switchStep", "0..steps")]
    [InlineData("""{"class":7,"colour":"red"}""", "colour", "unknown field")]
    public async Task Should_refuse_every_invalid_field_of_a_distillation_with_a_problem_naming_it(string body, string field, string limit)
    {
        using var http = ServingTestStore.Client(fixture.Cluster.Nodes.First(n => n.Alive).Http);
        using var response = await http.PostAsync("/v1/distillations", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var messages = (await Json(response)).GetProperty("errors").GetProperty(field).EnumerateArray().Select(m => m.GetString()!).ToList();
        Assert.Contains(messages, m => m.Contains(limit, StringComparison.Ordinal));
    }
}
