using Islands.Hosting.Configuration;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Imaging;
using Islands.Diffusion.IO;
using Islands.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;

namespace Islands.Island.Tests;

/// <summary>
/// One island's publication endpoints over HTTP, built from the same <see cref="PublicationEndpoints"/> an island node
/// maps (the node itself would also train; these tests need its run directory to hold still).
/// </summary>
public sealed class LocalPublisher : IAsyncDisposable
{
    public const string Key = "publication-key-0123456789";
    private readonly WebApplication app;

    private LocalPublisher(WebApplication app, string runDirectory)
    {
        this.app = app;
        RunDirectory = runDirectory;
    }

    public string RunDirectory { get; }
    public string Http => IslandNode.HttpAddress(app);

    public static async Task<LocalPublisher> StartAsync(string runDirectory, IReadOnlyList<string>? keys = null)
    {
        var builder = NodeHost.CreateBuilder("127.0.0.1", 0, TimeSpan.FromSeconds(5), l => l.SetMinimumLevel(LogLevel.Warning));
        PublicationEndpoints.AddServices(builder.Services, keys ?? [Key]);
        var app = builder.Build();
        app.UseAuthentication();
        app.UseAuthorization();
        PublicationEndpoints.Map(app, runDirectory);
        await app.StartAsync();
        return new LocalPublisher(app, runDirectory);
    }

    public async ValueTask DisposeAsync() => await app.DisposeAsync();
}

/// <summary>
/// Islands and serving share no filesystem: serving fetches each island's publication over HTTP into its own cache,
/// verifies every file, resumes interrupted transfers and refuses what does not verify.
/// </summary>
[Collection("islands")]
public sealed class PublicationMirrorSpecs
{
    private static readonly string[] Runs = ["expert-0", "expert-1", "expert-2", "expert-3", "router"];

    private static string SourcesSettings(IEnumerable<LocalPublisher> publishers, params string[] more) =>
        $"sources:endpoints={JsonSerializer.Serialize(publishers.Select(p => p.Http).Concat(more))}; " +
        $"sources:key=\"{LocalPublisher.Key}\"; sources:interval=\"500ms\"";

    private static async Task<JsonElement> ExpertsAsync(HttpClient http) =>
        JsonDocument.Parse(await http.GetStringAsync("/v1/experts")).RootElement.Clone();

    private static async Task<List<LocalPublisher>> PublishersAsync(string islands) =>
        [.. await Task.WhenAll(Runs.Select(r => LocalPublisher.StartAsync(Path.Combine(islands, r))))];

    [Fact]
    public async Task Serving_fetches_every_island_over_HTTP_into_its_own_cache_serves_it_and_follows_a_new_publication()
    {
        var islands = await ServingTestStore.CopyAsync();
        var publishers = await PublishersAsync(islands);
        var cache = IslandTestEnvironment.TempDir("serving-cache");
        try
        {
            await using var serving = await LocalServing.StartAsync(1, cache, SourcesSettings(publishers));
            using var http = ServingTestStore.Client(serving.Nodes[0].Http);
            await IslandTestEnvironment.Eventually(async () =>
            {
                var experts = await ExpertsAsync(http);
                return experts.GetProperty("experts").GetArrayLength() == 4 && experts.GetProperty("experts").EnumerateArray().All(e => e.GetProperty("available").GetBoolean())
                       && experts.GetProperty("router").ValueKind == JsonValueKind.Object;
            }, TimeSpan.FromSeconds(60), "serving has all four experts and the router from the islands' HTTP endpoints");

            // The cache holds exactly what the islands published, and it verifies on its own.
            foreach (var run in Runs)
            {
                var island = Json.Read<PublishedCheckpoint>(Path.Combine(islands, run, PublishedCheckpoint.FileName));
                var (copy, directory) = PublishedCheckpoint.ReadVerified(Path.Combine(cache, run));
                Assert.Equal(island.ManifestSha256, copy.ManifestSha256);
                Assert.StartsWith(Path.Combine(cache, run), directory);
            }
            Assert.Empty(Directory.GetFiles(cache, "*.partial", SearchOption.AllDirectories));
            var sources = (await ExpertsAsync(http)).GetProperty("sources").EnumerateArray().ToList();
            Assert.Equal(5, sources.Count);
            Assert.All(sources, s => Assert.Contains(s.GetProperty("state").GetString(), new[] { "fetched", "up-to-date" }));
            Assert.All(sources, s => Assert.True(s.GetProperty("bytesFetched").GetInt64() > 0));

            using var answer = await ServingTestStore.PostAsync(http, new { count = 4, @class = 3, steps = 6, seed = 5, format = "json" });
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
            var body = JsonDocument.Parse(await answer.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal(0, body.GetProperty("nonFiniteImages").GetInt32());
            foreach (var image in body.GetProperty("images").EnumerateArray())
            {
                var (pixels, _, _) = ImageGrid.DecodeGrey(Convert.FromBase64String(image.GetString()!));
                Assert.True(pixels.Max() - pixels.Min() > 32, "a generated image is (nearly) constant");
            }
            var served = body.GetProperty("checkpoints").EnumerateArray().Select(c => c.GetProperty("manifestSha256").GetString()).ToHashSet();
            foreach (var run in Runs)
                Assert.Contains(Json.Read<PublishedCheckpoint>(Path.Combine(islands, run, PublishedCheckpoint.FileName)).ManifestSha256, served);

            // expert-2's island commits and publishes a new checkpoint: serving follows it without a restart.
            var run2 = Path.Combine(islands, "expert-2");
            var old = PublishedCheckpoint.ReadVerified(run2);
            var next = new CheckpointStore(run2).Commit(old.Published.Step + 1, old.Published.Loss, temp =>
            {
                foreach (var file in old.Published.Files.Keys) File.Copy(Path.Combine(old.Directory, file), Path.Combine(temp, file));
            });
            PublishedCheckpoint.Publish(run2, "expert:2", "expert-2", next);
            await IslandTestEnvironment.Eventually(async () =>
                    (await ExpertsAsync(http)).GetProperty("experts")[2].GetProperty("step").GetInt64() == old.Published.Step + 1,
                TimeSpan.FromSeconds(30), "serving follows expert-2's new publication");
            Assert.Equal(next.ManifestSha256, PublishedCheckpoint.ReadVerified(Path.Combine(cache, "expert-2")).Published.ManifestSha256);
            // The checkpoint it replaced stays in the cache (a sampler may still be loading it).
            Assert.Equal(2, Directory.GetDirectories(Path.Combine(cache, "expert-2", "checkpoints")).Length);
        }
        finally
        {
            foreach (var p in publishers) await p.DisposeAsync();
        }
    }

    [Fact]
    public async Task An_interrupted_transfer_resumes_where_it_stopped_and_a_file_that_does_not_verify_is_fetched_again()
    {
        var islands = await ServingTestStore.CopyAsync();
        var publishers = await PublishersAsync(islands);
        var cache = IslandTestEnvironment.TempDir("serving-cache-resume");
        try
        {
            // What an interrupted transfer of expert-0 leaves: half of ema.bin, and a model.bin whose received bytes are wrong.
            var (published, directory) = PublishedCheckpoint.ReadVerified(Path.Combine(islands, "expert-0"));
            var name = Path.GetFileName(directory);
            var incoming = Path.Combine(cache, "expert-0", PublicationMirror.IncomingDirectory, $"{name}-{published.ManifestSha256[..16]}");
            Directory.CreateDirectory(incoming);
            var ema = await File.ReadAllBytesAsync(Path.Combine(directory, "ema.bin"));
            await File.WriteAllBytesAsync(Path.Combine(incoming, "ema.bin.partial"), ema[..(ema.Length / 2)]);
            var model = await File.ReadAllBytesAsync(Path.Combine(directory, "model.bin"));
            var damaged = model[..(model.Length / 3)];
            for (var i = 0; i < damaged.Length; i += 97) damaged[i] ^= 0x5a;
            await File.WriteAllBytesAsync(Path.Combine(incoming, "model.bin.partial"), damaged);

            await using var serving = await LocalServing.StartAsync(1, cache, SourcesSettings(publishers));
            using var http = ServingTestStore.Client(serving.Nodes[0].Http);
            await IslandTestEnvironment.Eventually(async () =>
                (await ExpertsAsync(http)).GetProperty("experts").EnumerateArray().Count(e => e.GetProperty("available").GetBoolean()) == 4,
                TimeSpan.FromSeconds(60), "serving has all four experts");

            var (copy, cached) = PublishedCheckpoint.ReadVerified(Path.Combine(cache, "expert-0"));
            Assert.Equal(published.ManifestSha256, copy.ManifestSha256);
            Assert.Equal(ema, await File.ReadAllBytesAsync(Path.Combine(cached, "ema.bin")));
            Assert.Equal(model, await File.ReadAllBytesAsync(Path.Combine(cached, "model.bin")));
            var source = (await ExpertsAsync(http)).GetProperty("sources").EnumerateArray().Single(s => s.GetProperty("island").GetString() == "expert-0");
            // Only ema.bin's kept half counts as resumed: the damaged model.bin was discarded and fetched whole.
            Assert.Equal(ema.Length / 2, source.GetProperty("bytesResumed").GetInt64());
            Assert.False(Directory.Exists(Path.Combine(cache, "expert-0", PublicationMirror.IncomingDirectory, $"{name}-{published.ManifestSha256[..16]}")));
        }
        finally
        {
            foreach (var p in publishers) await p.DisposeAsync();
        }
    }

    [Fact]
    public async Task A_file_the_island_serves_that_does_not_match_its_publication_is_never_installed_or_served_and_a_dead_endpoint_delays_nobody()
    {
        var islands = await ServingTestStore.CopyAsync();
        var (_, directory) = PublishedCheckpoint.ReadVerified(Path.Combine(islands, "expert-1"));
        var ema = Path.Combine(directory, "ema.bin");
        var bytes = await File.ReadAllBytesAsync(ema);
        bytes[bytes.Length / 2] ^= 0xff;
        await File.WriteAllBytesAsync(ema, bytes);
        var publishers = await PublishersAsync(islands);
        var cache = IslandTestEnvironment.TempDir("serving-cache-corrupt");
        try
        {
            // Nothing listens on this port: an island node that is down.
            var dead = $"http://127.0.0.1:{IslandTestEnvironment.FreePort()}/";
            await using var serving = await LocalServing.StartAsync(1, cache, SourcesSettings(publishers, dead));
            using var http = ServingTestStore.Client(serving.Nodes[0].Http);
            await IslandTestEnvironment.Eventually(async () =>
                (await ExpertsAsync(http)).GetProperty("sources").EnumerateArray()
                    .Any(s => s.GetProperty("state").GetString() == "failed" && s.GetProperty("error").GetString()!.Contains("does not match")),
                TimeSpan.FromSeconds(60), "the source of the corrupt file is reported as failed because a hash does not match");
            await IslandTestEnvironment.Eventually(async () =>
                (await ExpertsAsync(http)).GetProperty("experts").EnumerateArray().Count(e => e.GetProperty("available").GetBoolean()) == 3,
                TimeSpan.FromSeconds(30), "the three islands whose files verify are served");
            var experts = await ExpertsAsync(http);
            Assert.False(experts.GetProperty("experts")[1].GetProperty("available").GetBoolean());
            Assert.False(File.Exists(Path.Combine(cache, "expert-1", PublishedCheckpoint.FileName)));
            Assert.False(Directory.Exists(Path.Combine(cache, "expert-1", "checkpoints")));
            // The dead endpoint's own round may still be retrying when the others are done: it did not hold them up.
            JsonElement down = default;
            await IslandTestEnvironment.Eventually(async () =>
            {
                down = (await ExpertsAsync(http)).GetProperty("sources").EnumerateArray().Single(s => s.GetProperty("endpoint").GetString() == dead);
                return down.GetProperty("state").GetString() != "not-checked";
            }, TimeSpan.FromSeconds(30), "the dead endpoint's first round ends");
            Assert.Equal("failed", down.GetProperty("state").GetString());
            Assert.StartsWith(dead, down.GetProperty("error").GetString());
        }
        finally
        {
            foreach (var p in publishers) await p.DisposeAsync();
        }
    }

    [Theory]
    [InlineData("sources:endpoints=[\"expert-0:8080\"]; sources:key=\"publication-key-0123456789\"", "islands:serving:sources:endpoints")]
    [InlineData("sources:endpoints=[\"ftp://expert-0:8080\"]; sources:key=\"publication-key-0123456789\"", "islands:serving:sources:endpoints")]
    [InlineData("sources:endpoints=[\"http://expert-0:8080\"]", "islands:serving:sources:key")]
    [InlineData("sources:endpoints=[\"http://expert-0:8080\"]; sources:key=\"short\"", "islands:serving:sources:key")]
    [InlineData("sources:endpoints=[\"http://expert-0:8080\"]; sources:key=\"publication-key-0123456789\"; sources:maxFileSize=\"lots\"", "islands:serving:sources:maxFileSize")]
    [InlineData("sources:endpoints=[\"http://expert-0:8080\"]; sources:key=\"publication-key-0123456789\"; sources:interval=\"0s\"", "islands:serving:sources:interval")]
    [InlineData("tls:enabled=true; tls:certificate=\"/nonexistent/serving.pfx\"", "islands:serving:tls:certificate")]
    [InlineData("http:failedRetention=\"0s\"", "islands:serving:http:failedRetention")]
    public void A_bad_sources_tls_or_retention_setting_is_reported_with_its_key(string settings, string named)
    {
        var file = Path.Combine(IslandTestEnvironment.TempDir("sources-config"), "serving.json");
        File.WriteAllText(file, ConfigurationJson.From(IslandTestEnvironment.Pairs("islands:serving",
            $"apiKeys=[\"{ServingTestStore.ApiKey}\"]; {settings}")));
        var error = Assert.Throws<Diffusion.ConfigException>(() => ServingNodeConfig.Parse(ServingNodeConfig.Load(file, new Dictionary<string, string?>(), new System.Collections.Hashtable())));
        Assert.Contains(named, error.Message);
    }

    [Fact]
    public async Task An_islands_publication_endpoints_refuse_a_missing_or_wrong_key_and_serve_only_the_files_of_its_checkpoints()
    {
        var islands = await ServingTestStore.CopyAsync();
        var run = Path.Combine(islands, "expert-3");
        var (published, directory) = PublishedCheckpoint.ReadVerified(run);
        await using var open = await LocalPublisher.StartAsync(run);
        await using var closed = await LocalPublisher.StartAsync(run, keys: []);
        using var anonymous = new HttpClient { BaseAddress = new Uri(open.Http) };
        using var wrong = new HttpClient { BaseAddress = new Uri(open.Http) };
        wrong.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "not-the-key-0123456789");
        using var right = new HttpClient { BaseAddress = new Uri(open.Http) };
        right.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", LocalPublisher.Key);
        using var toClosed = new HttpClient { BaseAddress = new Uri(closed.Http) };
        toClosed.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", LocalPublisher.Key);

        foreach (var client in new[] { anonymous, wrong, toClosed })
        {
            using var refused = await client.GetAsync("/v1/publication");
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            Assert.Equal("application/problem+json", refused.Content.Headers.ContentType?.MediaType);
        }
        using (var none = await toClosed.GetAsync("/v1/publication"))
            Assert.Contains("islands:publication:keys", await none.Content.ReadAsStringAsync());

        var offered = await right.GetFromJsonAsync<PublishedCheckpoint>("/v1/publication", Json.Options);
        Assert.Equal(published.ManifestSha256, offered!.ManifestSha256);
        Assert.NotNull(offered.ConfigSha256);

        var name = Path.GetFileName(directory);
        var ema = await File.ReadAllBytesAsync(Path.Combine(directory, "ema.bin"));
        using (var range = new HttpRequestMessage(HttpMethod.Get, $"/v1/publication/checkpoints/{name}/ema.bin"))
        {
            range.Headers.Range = new RangeHeaderValue(100, null);
            using var partial = await right.SendAsync(range);
            Assert.Equal(HttpStatusCode.PartialContent, partial.StatusCode);
            Assert.Equal(ema[100..], await partial.Content.ReadAsByteArrayAsync());
        }
        // Nothing but a retained checkpoint's manifest and the files it names.
        File.WriteAllText(Path.Combine(directory, "extra.txt"), "not in the manifest");
        foreach (var path in new[]
                 {
                     $"/v1/publication/checkpoints/{name}/extra.txt", $"/v1/publication/checkpoints/{name}/..%2F..%2Fpublished.json",
                     "/v1/publication/checkpoints/..%2F..%2F/config.json", "/v1/publication/checkpoints/step-999999999/ema.bin",
                 })
        {
            using var missing = await right.GetAsync(path);
            Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        }
    }
}
