using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Islands.Actors.Serving;
using Islands.Cli;
using Islands.Diffusion;
using Islands.Hosting;

namespace Islands.Island.Tests;

/// <summary>One serving node over the published test store, shared by the API specs.</summary>
public sealed class ServingNodeFixture : IAsyncLifetime
{
    public LocalServing Cluster { get; private set; } = null!;
    public LocalServingNode Node => Cluster.Nodes[0];
    public string Store { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Store = await ServingTestStore.StoreAsync();
        Cluster = await LocalServing.StartAsync(1, Store, "http:maxBodyBytes=4096");
    }

    public async Task DisposeAsync() => await Cluster.DisposeAsync();
}

/// <summary>The generation API as a client sees it: answers, every bad input, keys, idempotency, async, progress events.</summary>
[Collection("islands")]
public sealed class ServingApiSpecs(ServingNodeFixture fixture) : IClassFixture<ServingNodeFixture>
{
    private HttpClient Client(string? key = ServingTestStore.ApiKey) => ServingTestStore.Client(fixture.Node.Http, key);

    private static async Task<JsonElement> Json(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();

    [Fact]
    public async Task Should_answer_a_generation_with_a_png_grid_and_a_json_body_with_images_routing_and_timings()
    {
        using var http = Client();
        using var png = await ServingTestStore.PostAsync(http, new { count = 4, @class = 3, steps = 6, seed = 11 });
        Assert.Equal(HttpStatusCode.OK, png.StatusCode);
        Assert.Equal("image/png", png.Content.Headers.ContentType?.MediaType);
        var bytes = await png.Content.ReadAsByteArrayAsync();
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], bytes[..4]);
        Assert.Equal("11", png.Headers.GetValues("X-Islands-Seed").Single());

        using var json = await ServingTestStore.PostAsync(http, new { count = 3, @class = "Trouser", steps = 5, seed = 11, strategy = "top2", format = "json" });
        Assert.Equal(HttpStatusCode.OK, json.StatusCode);
        var body = await Json(json);
        Assert.Equal(3, body.GetProperty("images").GetArrayLength());
        Assert.Equal(1, body.GetProperty("class").GetInt32());
        Assert.Equal("top2", body.GetProperty("strategy").GetString());
        Assert.All(body.GetProperty("routing").EnumerateArray(), r => Assert.Equal(5, r.GetArrayLength()));
        Assert.Equal(4, body.GetProperty("imageStepsByExpert").GetArrayLength());
        Assert.Equal(15, body.GetProperty("imageStepsByExpert").EnumerateArray().Sum(e => e.GetInt64()));
        Assert.True(body.GetProperty("timings").GetProperty("totalSeconds").GetDouble() > 0);
        Assert.Equal(0, body.GetProperty("nonFiniteImages").GetInt32());
        Assert.Contains(body.GetProperty("checkpoints").EnumerateArray(), c => c.GetProperty("job").GetString() == "router");
        var first = Convert.FromBase64String(body.GetProperty("images")[0].GetString()!);
        Assert.Equal((byte)'P', first[1]);
        foreach (var image in body.GetProperty("images").EnumerateArray())
        {
            // Served images are looked at, not only decoded: none may be flat (all black, all grey, or NaN turned to 0).
            var (pixels, _, _) = Diffusion.Imaging.ImageGrid.DecodeGrey(Convert.FromBase64String(image.GetString()!));
            Assert.True(pixels.Max() - pixels.Min() >= 32, $"a served image is flat: pixel range {pixels.Min()}..{pixels.Max()}");
        }
    }

    [Theory]
    [InlineData("euler")]
    [InlineData("heun")]
    public async Task Should_serve_the_offline_ensembles_pixels_for_the_same_seed_with_either_stepper(string sampler)
    {
        using var http = Client();
        using var response = await ServingTestStore.PostAsync(http, new { count = 4, @class = 7, steps = 5, seed = 23, strategy = "top2", sampler, format = "json" });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = await Json(response);
        Assert.Equal(sampler, body.GetProperty("sampler").GetString());
        Assert.All(body.GetProperty("routing").EnumerateArray(), r => Assert.Equal(5, r.GetArrayLength()));
        var served = body.GetProperty("images").EnumerateArray()
            .SelectMany(i => Diffusion.Imaging.ImageGrid.DecodeGrey(Convert.FromBase64String(i.GetString()!)).Pixels).ToArray();

        // The same published experts and router, sampled offline in this process: the one routed step, so the same pixels.
        var scan = Diffusion.Serving.PublishedModels.Scan(fixture.Store);
        var experts = scan.Experts.OrderBy(e => e.Expert).Select(e => Diffusion.Serving.ServedModels.LoadExpert(e, "fp32")).ToList();
        var shape = Diffusion.Serving.ServedModels.ImageShape(scan.Experts[0]);
        var (router, _) = Diffusion.Serving.ServedModels.LoadRouter(scan.Router!, shape.C * shape.H * shape.W);
        try
        {
            byte[] Offline(string method)
            {
                var ensemble = new Diffusion.Routing.ExpertEnsemble(experts.Select(e => (Diffusion.Modules.IVelocityModel)e.Model).ToList(), router,
                    Diffusion.Routing.RoutingStrategy.Parse("top2"));
                using var samples = Diffusion.Sampling.FlowSampler.Sample(ensemble.Field(1), 4, [7, 7, 7, 7],
                    new Diffusion.Sampling.SamplerOptions(Steps: 5, Method: method, Seed: 23), shape);
                return Diffusion.Data.ImageTensors.ToBytes(samples);
            }
            var offline = Offline(sampler);
            var other = Offline(sampler == "euler" ? "heun" : "euler");
            var worst = served.Zip(offline, (a, b) => Math.Abs(a - b)).Max();
            Assert.True(worst <= 1, $"{sampler}: served pixels differ from offline ones by up to {worst} of 255");
            var apart = served.Zip(other, (a, b) => Math.Abs(a - b)).Max();
            Assert.True(apart >= 6, $"{sampler}: the other stepper gives nearly the same pixels (up to {apart} apart), so this test cannot tell them apart");
            Assert.True(served.Max() - served.Min() >= 32, $"{sampler}: served images are flat");
        }
        finally
        {
            router.Dispose();
            foreach (var e in experts) e.Dispose();
        }
    }

    [Theory]
    [InlineData("""{"sampler":"rk4"}""", "sampler", "euler or heun")]
    [InlineData("""{"count":0}""", "count", "1 to 256")]
    [InlineData("""{"count":257}""", "count", "1 to 256")]
    [InlineData("""{"count":"many"}""", "count", "1 to 256")]
    [InlineData("""{"steps":0}""", "steps", "1 to 200")]
    [InlineData("""{"steps":201}""", "steps", "1 to 200")]
    [InlineData("""{"cfg":-0.5}""", "cfg", "0 to 20")]
    [InlineData("""{"cfg":20.5}""", "cfg", "0 to 20")]
    [InlineData("""{"class":10}""", "class", "0 to 9")]
    [InlineData("""{"class":"Spaceship"}""", "class", "Ankle boot")]
    [InlineData("""{"strategy":"top0"}""", "strategy", "top1")]
    [InlineData("""{"strategy":"oracle:1"}""", "strategy", "offline")]
    [InlineData("""{"seed":-1}""", "seed", "0 to 2^53")]
    [InlineData("""{"format":"gif"}""", "format", "png")]
    [InlineData("""{"async":"yes"}""", "async", "true or false")]
    [InlineData("""{"colour":"red"}""", "colour", "unknown field")]
    public async Task Should_refuse_every_invalid_field_with_a_problem_naming_the_field_and_its_limit(string body, string field, string limit)
    {
        using var http = Client();
        using var response = await http.PostAsync("/v1/generations", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await Json(response);
        var messages = problem.GetProperty("errors").GetProperty(field).EnumerateArray().Select(m => m.GetString()!).ToList();
        Assert.Contains(messages, m => m.Contains(limit, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Should_refuse_malformed_json_a_wrong_media_type_and_an_oversized_body_and_keep_serving()
    {
        using var http = Client();
        using var malformed = await http.PostAsync("/v1/generations", new StringContent("""{"count": 3,""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, malformed.StatusCode);
        Assert.Contains("not valid JSON", (await Json(malformed)).GetProperty("detail").GetString());

        using var text = await http.PostAsync("/v1/generations", new StringContent("count=3", Encoding.UTF8, "text/plain"));
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, text.StatusCode);

        var huge = "{\"count\":1,\"pad\":\"" + new string('x', 10_000) + "\"}";
        using var tooLarge = await http.PostAsync("/v1/generations", new StringContent(huge, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, tooLarge.StatusCode);
        Assert.Contains("islands:serving:http:maxBodyBytes", (await Json(tooLarge)).GetProperty("detail").GetString());

        // Chunked, so the size is only known while reading.
        var chunked = new StringContent(huge, Encoding.UTF8, "application/json");
        chunked.Headers.ContentLength = null;
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/generations") { Content = chunked };
        request.Headers.TransferEncodingChunked = true;
        using var tooLargeChunked = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, tooLargeChunked.StatusCode);

        using var fine = await ServingTestStore.PostAsync(http, new { count = 1, steps = 2 });
        Assert.Equal(HttpStatusCode.OK, fine.StatusCode);
    }

    [Fact]
    public async Task Should_require_a_known_api_key_everywhere_but_the_health_endpoints()
    {
        using var anonymous = Client(key: null);
        using var wrong = Client(key: "not-the-key-0123456789");
        foreach (var client in new[] { anonymous, wrong })
        {
            using var post = await ServingTestStore.PostAsync(client, new { count = 1 });
            Assert.Equal(HttpStatusCode.Unauthorized, post.StatusCode);
            Assert.Equal("Bearer", post.Headers.WwwAuthenticate.Single().Scheme);
            Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("/v1/experts")).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await client.GetAsync("/openapi/v1.json")).StatusCode);
        }
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/health/live")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("/health/ready")).StatusCode);
        using var ok = Client();
        Assert.Equal(HttpStatusCode.OK, (await ok.GetAsync("/v1/experts")).StatusCode);
    }

    [Fact]
    public async Task Should_refuse_to_start_without_an_api_key_and_read_keys_from_the_environment_and_a_file()
    {
        var none = Assert.Throws<ConfigException>(() => ServingNodeConfig.Parse(ServingNodeConfig.Load(null, new Dictionary<string, string?>(), new System.Collections.Hashtable())));
        Assert.Equal("islands:serving:apiKeys", none.Field);

        var file = Path.Combine(IslandTestEnvironment.TempDir("keys"), "keys.txt");
        await File.WriteAllTextAsync(file, "# ops keys\nfile-key-0123456789abcdef\n");
        var env = new System.Collections.Hashtable { ["ISLANDS_API_KEYS"] = "env-key-0123456789abcdef, env-key-2-0123456789abcdef", ["ISLANDS_API_KEYS_FILE"] = file };
        var settings = ServingNodeConfig.Parse(ServingNodeConfig.Load(null, new Dictionary<string, string?>(), env));
        Assert.Equal(["env-key-0123456789abcdef", "env-key-2-0123456789abcdef", "file-key-0123456789abcdef"], settings.ApiKeys);

        var shortKey = Assert.Throws<ConfigException>(() => ServingNodeConfig.Parse(ServingNodeConfig.Load(null, new Dictionary<string, string?>(),
            new System.Collections.Hashtable { ["ISLANDS_API_KEYS"] = "short" })));
        Assert.DoesNotContain("short", shortKey.Message);
    }

    [Fact]
    public async Task Should_answer_a_retried_idempotency_key_with_the_stored_result_and_refuse_it_for_another_request()
    {
        using var http = Client();
        var key = Guid.NewGuid().ToString("N");
        var body = new { count = 2, steps = 4, format = "json" };
        // Two at once and one after: one computation, three identical answers.
        var concurrent = await Task.WhenAll(ServingTestStore.PostAsync(http, body, key), ServingTestStore.PostAsync(http, body, key));
        using var later = await ServingTestStore.PostAsync(http, body, key);
        var answers = new List<JsonElement>();
        foreach (var response in concurrent.Append(later))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            answers.Add(await Json(response));
        }
        foreach (var answer in answers.Skip(1))
        {
            Assert.Equal(answers[0].GetProperty("id").GetString(), answer.GetProperty("id").GetString());
            Assert.Equal(answers[0].GetProperty("images").ToString(), answer.GetProperty("images").ToString());
            // The same computation: its own timings, not a second run's.
            Assert.Equal(answers[0].GetProperty("timings").ToString(), answer.GetProperty("timings").ToString());
        }

        using var other = await ServingTestStore.PostAsync(http, new { count = 3, steps = 4 }, key);
        Assert.Equal(HttpStatusCode.UnprocessableEntity, other.StatusCode);
        using var otherCaller = ServingTestStore.Client(fixture.Node.Http);
        using var bad = await ServingTestStore.PostAsync(otherCaller, body, new string('k', 201));
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
    }

    [Fact]
    public async Task Should_accept_an_async_request_at_once_and_return_its_result_from_get()
    {
        using var http = Client();
        using var accepted = await ServingTestStore.PostAsync(http, new { count = 2, steps = 10, seed = 3, async = true });
        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
        var id = (await Json(accepted)).GetProperty("id").GetString()!;
        Assert.Equal($"/v1/generations/{id}", accepted.Headers.Location?.ToString());
        JsonElement result = default;
        await IslandTestEnvironment.Eventually(async () =>
        {
            using var get = await http.GetAsync($"/v1/generations/{id}");
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
            result = await Json(get);
            return result.TryGetProperty("images", out _);
        }, TimeSpan.FromSeconds(60), $"async generation {id} finishes");
        Assert.Equal(2, result.GetProperty("images").GetArrayLength());
        Assert.Equal(3, result.GetProperty("seed").GetInt64());
        using var png = await http.GetAsync($"/v1/generations/{id}?format=png");
        Assert.Equal("image/png", png.Content.Headers.ContentType?.MediaType);
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync($"/v1/generations/g{new string('0', 32)}")).StatusCode);
    }

    [Fact]
    public async Task Should_stream_progress_of_a_request_as_server_sent_events()
    {
        using var http = Client();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/generations") { Content = JsonContent.Create(new { count = 2, steps = 5 }) };
        request.Headers.Accept.ParseAdd("text/event-stream");
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var text = await response.Content.ReadAsStringAsync();
        var events = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e.Split('\n')[0]).ToList();
        Assert.Equal("event: accepted", events[0]);
        Assert.Equal(5, events.Count(e => e == "event: progress"));
        Assert.Equal("event: completed", events[^1]);
    }

    [Fact]
    public async Task Should_list_the_published_experts_and_describe_the_api_in_openapi()
    {
        using var http = Client();
        var experts = await http.GetFromJsonAsync<JsonElement>("/v1/experts");
        Assert.Equal(4, experts.GetProperty("experts").GetArrayLength());
        Assert.All(experts.GetProperty("experts").EnumerateArray(), e =>
        {
            Assert.True(e.GetProperty("available").GetBoolean());
            Assert.Equal(64, e.GetProperty("manifestSha256").GetString()!.Length);
        });
        Assert.Equal(60, experts.GetProperty("router").GetProperty("step").GetInt64());
        var openapi = await http.GetFromJsonAsync<JsonElement>("/openapi/v1.json");
        var paths = openapi.GetProperty("paths");
        Assert.True(paths.TryGetProperty("/v1/generations", out var generations));
        Assert.True(generations.GetProperty("post").GetProperty("responses").TryGetProperty("429", out _));
        Assert.True(paths.TryGetProperty("/v1/experts", out _));
    }

    [Fact]
    public async Task Should_carry_the_http_request_trace_through_the_router_to_every_sampler_call()
    {
        var spans = new System.Collections.Concurrent.ConcurrentBag<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name is ServingTelemetry.Name or "Microsoft.AspNetCore",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Add,
        };
        ActivitySource.AddActivityListener(listener);
        using var http = Client();
        using var response = await ServingTestStore.PostAsync(http, new { count = 3, steps = 3, strategy = "full", format = "json" });
        var id = (await Json(response)).GetProperty("id").GetString();
        var generation = spans.Single(s => s.OperationName == "generation" && (string?)s.GetTagItem("islands.generation") == id);
        var request = spans.Single(s => s.TraceId == generation.TraceId && s.Source.Name == "Microsoft.AspNetCore");
        Assert.Equal(request.SpanId, generation.ParentSpanId);
        var samplerCalls = spans.Where(s => s.OperationName == "sampler.velocity" && s.TraceId == request.TraceId).ToList();
        // Full routing asks all 4 experts at each of the 3 steps.
        Assert.Equal(12, samplerCalls.Count);
    }

    [Fact]
    public async Task Should_write_a_grid_with_the_generate_client_using_the_key_from_the_environment()
    {
        var output = Path.Combine(IslandTestEnvironment.TempDir("generate"), "grid.png");
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        Environment.SetEnvironmentVariable("ISLANDS_API_KEY", ServingTestStore.ApiKey);
        try
        {
            var code = await IslandsCli.RunAsync(["generate", "--url", fixture.Node.Http, "--count", "4", "--class", "Sneaker", "--steps", "4", "--out", output], stdout, stderr);
            Assert.True(code == 0, stderr.ToString());
            Assert.True(new FileInfo(output).Length > 100);
            Assert.Contains("wrote 4 images", stdout.ToString());
            Environment.SetEnvironmentVariable("ISLANDS_API_KEY", null);
            var denied = await IslandsCli.RunAsync(["generate", "--url", fixture.Node.Http, "--out", output], stdout, stderr);
            Assert.NotEqual(0, denied);
            Assert.Contains("401", stderr.ToString());
            Assert.Contains("ISLANDS_API_KEY", stderr.ToString());
        }
        finally
        {
            Environment.SetEnvironmentVariable("ISLANDS_API_KEY", null);
        }
    }
}
