using Islands.Hosting.Configuration;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Akka.Actor;
using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Configs;
using Islands.Diffusion.IO;
using Islands.Diffusion.Routing;
using Islands.Diffusion.Training;
using Islands.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Islands.Island.Tests;

/// <summary>
/// A checkpoint store as islands leave it: four tiny experts and a router trained on the random K=4 partitions, each
/// published (published.json with every file's hash) exactly as an island's job actor publishes after a commit.
/// </summary>
public static class ServingTestStore
{
    public const string ApiKey = "test-key-0123456789abcdef";

    private static readonly Lazy<Task<string>> Store = new(async () =>
    {
        var (data, partitions) = await IslandTestEnvironment.DatasetAsync();
        var store = IslandTestEnvironment.TempDir("serving-store");
        for (var k = 0; k < 4; k++)
        {
            var run = Path.Combine(store, $"expert-{k}");
            var config = new TrainConfig(Job: "expert", DataDirectory: data, PartitionsFile: partitions, Expert: k, Steps: 20, BatchSize: 16, WarmupSteps: 5,
                CheckpointEvery: 20, Seed: k, Model: new ModelConfig(BaseChannels: 8, ChannelMultipliers: [1, 2], DegradedCondition: true));
            TrainingRun.Execute(config, run);
            Publish(run, $"expert:{k}");
        }
        var router = Path.Combine(store, "router");
        RouterRun.Execute(new RouterConfig(DataDirectory: data, PartitionsFile: partitions, ExpertCount: 4, Hidden: 64, Steps: 60, BatchSize: 64, CheckpointEvery: 60), router);
        Publish(router, "router");
        return store;
    });

    public static void Publish(string run, string job)
    {
        var (step, directory) = new CheckpointStore(run).List()[0];
        PublishedCheckpoint.Publish(run, job, Path.GetFileName(run), new CheckpointRef(directory, step, AtomicFile.Sha256(Path.Combine(directory, CheckpointManifest.FileName))));
    }

    public static Task<string> StoreAsync() => Store.Value;

    /// <summary>A private copy of the store, for tests that damage it.</summary>
    public static async Task<string> CopyAsync()
    {
        var source = await StoreAsync();
        var copy = IslandTestEnvironment.TempDir("serving-store-copy");
        foreach (var file in Directory.GetFiles(source, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(copy, Path.GetRelativePath(source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
        // published.json names its checkpoint relative to the run, so the copy is self-contained.
        return copy;
    }

    public static HttpClient Client(string baseAddress, string? key = ApiKey)
    {
        var http = new HttpClient { BaseAddress = new Uri(baseAddress), Timeout = TimeSpan.FromMinutes(3) };
        if (key is not null) http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return http;
    }

    public static Task<HttpResponseMessage> PostAsync(HttpClient http, object body, string? idempotencyKey = null, CancellationToken cancel = default)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/generations") { Content = JsonContent.Create(body) };
        if (idempotencyKey is not null) request.Headers.Add("Idempotency-Key", idempotencyKey);
        return http.SendAsync(request, cancel);
    }
}

/// <summary>One in-process serving node, built exactly as `islands serve` builds it.</summary>
public sealed class LocalServingNode(WebApplication app, ServingNodeSettings settings)
{
    public WebApplication App { get; } = app;
    public ServingNodeSettings Settings { get; } = settings;
    public ActorSystem System => App.Services.GetRequiredService<ActorSystem>();
    public string Address => $"{Settings.Protocol}://{Settings.SystemName}@{Settings.Hostname}:{Settings.Port}";
    public string Http => IslandNode.HttpAddress(App);
    public bool Alive { get; private set; } = true;

    public async Task KillAsync()
    {
        Alive = false;
        await LocalNode.AbortAsync(App);
    }
}

/// <summary>A serving cluster of N in-process nodes on loopback over one checkpoint store.</summary>
public sealed class LocalServing : IAsyncDisposable
{
    public List<LocalServingNode> Nodes { get; } = [];

    /// <summary>islands:serving:results, shared by the nodes as compose's results volume is.</summary>
    public string ResultsDirectory { get; private set; } = "";

    /// <param name="settings">More settings below islands:serving, as "requestTimeout=\"300ms\"; http:maxInFlight=1" (JSON values).</param>
    /// <param name="logging">More logging set-up over the tests' (a capturing provider, an operator's filters).</param>
    /// <param name="protocol">akka.ssl.tcp when the hocon turns remoting TLS on.</param>
    public static async Task<LocalServing> StartAsync(int nodes, string store, string settings = "", string? name = null, Action<ILoggingBuilder>? logging = null,
        string protocol = "akka.tcp")
    {
        name ??= "t" + Guid.NewGuid().ToString("N")[..8];
        var cluster = new LocalServing { ResultsDirectory = Path.Combine(store, "results-" + name) };
        var ports = Enumerable.Range(0, nodes).Select(_ => IslandTestEnvironment.FreePort()).ToArray();
        var seeds = nodes == 1 ? null : string.Join(",", ports.Take(2).Select(p => $"{protocol}://serving-{name}@127.0.0.1:{p}"));
        var configFile = Path.Combine(store, $"serving-{name}.json");
        await File.WriteAllTextAsync(configFile, ConfigurationJson.From(new (string, object?)[]
        {
            ("name", name), ("http:port", 0), ("apiKeys", new[] { ServingTestStore.ApiKey }), ("results", cluster.ResultsDirectory),
            ("splitBrain:stableAfter", "5s"),
        }.Select(s => ("islands:serving:" + s.Item1, s.Item2)).Concat(IslandTestEnvironment.Pairs("islands:serving", settings))));
        foreach (var port in ports) cluster.Nodes.Add(await StartNodeAsync(configFile, store, port, seeds, logging));
        foreach (var node in cluster.Nodes)
        {
            await IslandTestEnvironment.Eventually(() => Task.FromResult(Akka.Cluster.Cluster.Get(node.System).State.Members.Count(m => m.Status == Akka.Cluster.MemberStatus.Up) == nodes),
                TimeSpan.FromSeconds(60), $"{node.Address} sees all {nodes} serving members up");
        }
        return cluster;
    }

    public static async Task<LocalServingNode> StartNodeAsync(string configFile, string store, int port, string? seeds, Action<ILoggingBuilder>? logging = null)
    {
        var options = new Dictionary<string, string?>
        {
            ["islands:serving:store"] = store,
            ["islands:serving:port"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["islands:serving:seedNodes"] = seeds,
        };
        var settings = ServingNodeConfig.Parse(ServingNodeConfig.Load(configFile, options, new System.Collections.Hashtable()));
        var app = ServingNode.Build(settings, builder =>
        {
            builder.SetMinimumLevel(Environment.GetEnvironmentVariable("ISLANDS_TEST_LOG") == "info" ? LogLevel.Information : LogLevel.Warning);
            logging?.Invoke(builder);
        });
        try
        {
            await app.StartAsync();
        }
        catch (OperationCanceledException)
        {
            // Its actor system shut down while the host started (a refused TLS handshake does that): nothing to keep.
            await app.DisposeAsync();
            throw;
        }
        return new LocalServingNode(app, settings);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in Nodes.Where(n => n.Alive)) await node.KillAsync();
        foreach (var node in Nodes) await node.App.DisposeAsync();
    }
}
