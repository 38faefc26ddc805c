using System.Net.Http.Json;
using Akka.Actor;
using Islands.Diffusion.IO;
using Islands.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Islands.Island.Tests;

/// <summary>One in-process node of an island, built exactly as `islands node` builds it.</summary>
public sealed class LocalNode(WebApplication app, IslandNodeSettings settings)
{
    public WebApplication App { get; } = app;
    public IslandNodeSettings Settings { get; } = settings;
    public ActorSystem System => App.Services.GetRequiredService<ActorSystem>();
    public string Address => $"{Settings.Protocol}://{Settings.SystemName}@{Settings.Hostname}:{Settings.Port}";
    public string Http => IslandNode.HttpAddress(App);
    public bool Alive { get; private set; } = true;

    /// <summary>A hard kill: the actor system stops without leaving the cluster, as if the process died.</summary>
    public async Task KillAsync()
    {
        Alive = false;
        await AbortAsync(App);
    }

    /// <summary>Aborts a node's actor system (no leaving, no hand-over) and stops its web host without waiting for it.</summary>
    public static async Task AbortAsync(WebApplication app)
    {
        ((ExtendedActorSystem)app.Services.GetRequiredService<ActorSystem>()).Abort();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try { await app.StopAsync(timeout.Token); } catch (OperationCanceledException) { }
    }

    public async Task StopGracefullyAsync()
    {
        Alive = false;
        await App.StopAsync();
    }
}

/// <summary>An island of N in-process nodes on loopback: its own cluster, its own journal, its own run directory.</summary>
public sealed class LocalIsland : IAsyncDisposable
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };
    public string Name { get; }
    public List<LocalNode> Nodes { get; } = [];
    public string Store { get; }
    public string RunDirectory => Path.Combine(Store, Name);

    private LocalIsland(string name, string store)
    {
        Name = name;
        Store = store;
    }

    public static async Task<LocalIsland> StartAsync(string name, int nodes, string store, string configJson, string provider, string? connectionString, string job = "expert:1")
    {
        var island = new LocalIsland(name, store);
        var ports = Enumerable.Range(0, nodes).Select(_ => IslandTestEnvironment.FreePort()).ToArray();
        var seeds = nodes == 1 ? null : string.Join(",", ports.Take(2).Select(p => $"akka.tcp://islands-{name}@127.0.0.1:{p}"));
        var configFile = Path.Combine(store, $"{name}.json");
        Directory.CreateDirectory(store);
        await File.WriteAllTextAsync(configFile, configJson);
        foreach (var port in ports)
            island.Nodes.Add(await StartNodeAsync(name, port, seeds, store, configFile, provider, connectionString, job));
        foreach (var node in island.Nodes)
        {
            await IslandTestEnvironment.Eventually(async () => (await island.StatusAsync(node)).Members.Count(m => m.Status == "Up") == nodes,
                TimeSpan.FromSeconds(60), $"{node.Address} sees all {nodes} members of island {name} up");
        }
        return island;
    }

    /// <summary>Starts one node through the same configuration path as `islands node` (defaults, file, options; no environment).</summary>
    public static async Task<LocalNode> StartNodeAsync(string island, int port, string? seeds, string store, string configFile, string provider,
        string? connectionString, string job = "expert:1")
    {
        var options = new Dictionary<string, string?>
        {
            ["islands:island"] = island,
            ["islands:job"] = job,
            ["islands:store"] = store,
            ["islands:port"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["islands:seedNodes"] = seeds,
            ["islands:journal:provider"] = provider,
            ["islands:journal:connectionString"] = connectionString,
        };
        var settings = IslandNodeConfig.Parse(IslandNodeConfig.Load(configFile, options, new System.Collections.Hashtable()));
        var log = new CapturedLog(LogLevel.Error);
        var app = IslandNode.Build(settings, logging =>
        {
            logging.SetMinimumLevel(Environment.GetEnvironmentVariable("ISLANDS_TEST_LOG") == "info" ? LogLevel.Information : LogLevel.Warning);
            logging.AddProvider(log);
        });
        try
        {
            await app.StartAsync();
            return new LocalNode(app, settings);
        }
        catch (OperationCanceledException e)
        {
            // The host stops itself while starting when its actor system shuts down first (Akka.Hosting then stops the
            // application, which cancels Kestrel's bind): say why. A node whose TLS handshake a peer refuses does that
            // by design (Akka.Remote's CoordinatedShutdown, exit code 79).
            await app.DisposeAsync();
            throw new InvalidOperationException($"node {island}@127.0.0.1:{port} stopped while starting: {log.Errors()}", e);
        }
    }

    public LocalNode AnyAlive(LocalNode? except = null) => Nodes.First(n => n.Alive && n != except);

    public async Task<IslandStatus> StatusAsync(LocalNode? via = null) => await StatusAsync((via ?? AnyAlive()).Http);

    public static async Task<IslandStatus> StatusAsync(string http) => (await Http.GetFromJsonAsync<IslandStatus>(http + "/status", Json.Options))!;

    public async Task<Islands.Actors.JobStatus?> JobAsync(LocalNode? via = null) => (await StatusAsync(via)).Job;

    public LocalNode NodeAt(string address) => Nodes.Single(n => n.Address == address);

    public async ValueTask DisposeAsync()
    {
        foreach (var node in Nodes.Where(n => n.Alive)) await node.KillAsync();
        foreach (var node in Nodes) await node.App.DisposeAsync();
    }
}
