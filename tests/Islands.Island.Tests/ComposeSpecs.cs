using System.Collections;
using System.Text.RegularExpressions;
using Islands.Hosting;
using YamlDotNet.Core;
using YamlDotNet.Serialization;

namespace Islands.Island.Tests;

/// <summary>
/// compose.yaml against the application: every ISLANDS_* variable it sets is one the role it starts reads, and each
/// node's whole environment (defaults substituted as compose would) passes that role's configuration check.
/// (CI also runs `docker-compose -f compose.yaml config`; no Docker engine runs here.)
/// </summary>
public sealed partial class ComposeSpecs
{
    private static string RepositoryFile(string name)
    {
        var dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "Islands.sln"))) dir = Path.GetDirectoryName(dir);
        return Path.Combine(dir ?? throw new InvalidOperationException("Islands.sln not found above the test binaries"), name);
    }

    private static Dictionary<string, (List<string> Command, Dictionary<string, string> Environment)> Services() =>
        Parse().ToDictionary(p => p.Key, p => (p.Value.Command, p.Value.Environment));

    private static Dictionary<string, (List<string> Command, Dictionary<string, string> Environment, List<string> Volumes)> Parse()
    {
        using var reader = new StreamReader(RepositoryFile("compose.yaml"));
        var document = new DeserializerBuilder().Build().Deserialize<Dictionary<object, object>>(new MergingParser(new Parser(reader)));
        var services = (Dictionary<object, object>)document["services"];
        var result = new Dictionary<string, (List<string>, Dictionary<string, string>, List<string>)>();
        foreach (var (name, body) in services)
        {
            var service = (Dictionary<object, object>)body;
            var command = service.TryGetValue("command", out var c) ? ((List<object>)c).Select(x => x.ToString()!).ToList() : [];
            var environment = service.TryGetValue("environment", out var e)
                ? ((Dictionary<object, object>)e).ToDictionary(p => p.Key.ToString()!, p => Substitute(p.Value?.ToString() ?? ""))
                : [];
            var volumes = service.TryGetValue("volumes", out var v) ? ((List<object>)v).Select(x => x.ToString()!).ToList() : [];
            result[name.ToString()!] = (command, environment, volumes);
        }
        return result;
    }

    /// <summary>${VAR:-default} as compose resolves it with VAR unset.</summary>
    private static string Substitute(string value) => Variable().Replace(value, m => m.Groups["default"].Value);

    [GeneratedRegex(@"\$\{(?<name>[A-Z_]+)(:-(?<default>[^}]*))?\}")]
    private static partial Regex Variable();

    private static Dictionary<string, string?> Options(List<string> command) =>
        command.Skip(1).Chunk(2).Where(p => p.Length == 2).ToDictionary(p => p[0], p => (string?)p[1]);

    [Fact]
    public void Islands_and_serving_share_no_volume_but_the_dataset_and_each_island_has_its_own()
    {
        var services = Parse();
        var stores = new Dictionary<string, string>();
        foreach (var (name, (command, _, volumes)) in services.Where(s => s.Value.Command.FirstOrDefault() == "node"))
        {
            var island = Options(command)["--island"]!;
            var store = Assert.Single(volumes, v => v.EndsWith(":/store", StringComparison.Ordinal));
            Assert.Equal($"store-{island}:/store", store);
            stores[name] = store.Split(':')[0];
        }
        Assert.Equal(5, stores.Values.Distinct().Count());
        var caches = new List<string>();
        foreach (var (name, (_, _, volumes)) in services.Where(s => s.Value.Command.FirstOrDefault() == "serve"))
        {
            Assert.DoesNotContain(volumes, v => stores.Values.Contains(v.Split(':')[0]));
            caches.Add(Assert.Single(volumes, v => v.EndsWith(":/store", StringComparison.Ordinal)));
        }
        Assert.Equal(3, caches.Distinct().Count());
        // What islands and serving both mount is the dataset and the deployment's remoting certificate, both read-only
        // for them (in separate datacenters each side gets the certificate from its own secret store), and nothing else.
        var islandVolumes = services.Where(s => s.Value.Command.FirstOrDefault() == "node").SelectMany(s => s.Value.Volumes.Select(v => v.Split(':')[0])).ToHashSet();
        var servingVolumes = services.Where(s => s.Value.Command.FirstOrDefault() == "serve").SelectMany(s => s.Value.Volumes.Select(v => v.Split(':')[0])).ToHashSet();
        Assert.Equal(["data", "tls"], islandVolumes.Intersect(servingVolumes).Order());
        foreach (var (name, (command, _, volumes)) in services.Where(s => s.Value.Command.FirstOrDefault() is "node" or "serve"))
        {
            Assert.Contains("data:/data:ro", volumes);
            Assert.Contains("tls:/tls:ro", volumes);
        }
        Assert.Equal(["tls:/tls"], services["tls-init"].Volumes);
    }

    /// <summary>Runs tls-init's command as compose would (its environment, its arguments) with the file in a temporary directory.</summary>
    private static async Task<string> ComposeCertificateAsync(Dictionary<string, (List<string> Command, Dictionary<string, string> Environment)> services)
    {
        var (command, environment) = services["tls-init"];
        var file = Path.Combine(IslandTestEnvironment.TempDir("compose-tls"), "islands.pfx");
        var arguments = command.Select(a => a == "/tls/islands.pfx" ? file : a).ToList();
        var info = new System.Diagnostics.ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "islands")) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in arguments) info.ArgumentList.Add(a);
        foreach (var (k, v) in environment) info.Environment[k] = v;
        using var process = System.Diagnostics.Process.Start(info)!;
        var stderr = process.StandardError.ReadToEndAsync();
        await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.True(process.ExitCode == 0, $"tls-init: {await stderr}");
        return file;
    }

    [Fact]
    public async Task Every_islands_variable_compose_sets_is_read_by_the_role_it_starts_and_passes_its_checks()
    {
        var services = Services();
        var certificate = await ComposeCertificateAsync(services);
        foreach (var (_, (_, environment)) in services.Where(s => s.Value.Environment.ContainsKey("ISLANDS_TLS_CERTIFICATE")))
        {
            Assert.Equal("/tls/islands.pfx", environment["ISLANDS_TLS_CERTIFICATE"]);
            environment["ISLANDS_TLS_CERTIFICATE"] = certificate;
        }
        var nodes = services.Where(s => s.Value.Command.FirstOrDefault() == "node").ToList();
        var servers = services.Where(s => s.Value.Command.FirstOrDefault() == "serve").ToList();
        Assert.Equal(15, nodes.Count);   // 5 islands x 3 nodes (two of them in the "ha" profile)
        Assert.Equal(3, servers.Count);

        foreach (var (name, (command, environment)) in nodes)
        {
            foreach (var key in environment.Keys.Where(k => k.StartsWith("ISLANDS_", StringComparison.Ordinal)))
                Assert.True(IslandNodeConfig.EnvironmentKeys.ContainsKey(key), $"{name}: islands node does not read {key}");
            var options = Options(command);
            var settings = IslandNodeConfig.Parse(IslandNodeConfig.Load(null, new Dictionary<string, string?>
            {
                ["islands:island"] = options["--island"],
                ["islands:job"] = options["--job"],
                ["islands:training:dataDirectory"] = options["--data"],
                ["islands:training:partitionsFile"] = options["--partitions"],
                ["islands:training:steps"] = options["--steps"],
            }, new Hashtable(environment)));
            Assert.Equal("postgresql", settings.JournalProvider);
            Assert.Equal(name, settings.PublicHostname);
            Assert.StartsWith("akka.ssl.tcp://", Assert.Single(settings.ServingContacts));
            // The password compose gives opens the certificate tls-init made.
            Assert.True(RemoteTls.Apply(new Akka.Remote.Hosting.RemoteOptions(), settings.Tls).EnableSsl);
        }
        foreach (var (name, (_, environment)) in servers)
        {
            foreach (var key in environment.Keys.Where(k => k.StartsWith("ISLANDS_", StringComparison.Ordinal)))
                Assert.True(ServingNodeConfig.EnvironmentKeys.ContainsKey(key), $"{name}: serving node does not read {key}");
            var env = new Hashtable(environment) { ["ISLANDS_API_KEYS"] = "compose-test-key-0123456789", ["ISLANDS_SOURCE_KEY"] = "compose-publication-key-0123" };
            var settings = ServingNodeConfig.Parse(ServingNodeConfig.Load(null, new Dictionary<string, string?>(), env));
            Assert.Equal("serving-main", settings.SystemName);
            Assert.Equal("akka.ssl.tcp", settings.Protocol);
            Assert.True(RemoteTls.Apply(new Akka.Remote.Hosting.RemoteOptions(), settings.Tls).EnableSsl);
            Assert.Equal(8080, settings.HttpPort);
            // Serving fetches from every island node, by its compose service name.
            Assert.Equal(nodes.Select(n => $"http://{n.Key}:8080/").Order(), settings.Sources.Endpoints.Select(e => e.ToString()).Order());
            // Without ISLANDS_PUBLICATION_KEY (substituted empty), a serving node with sources refuses to start and names the key.
            var noKey = new Hashtable(environment) { ["ISLANDS_API_KEYS"] = "compose-test-key-0123456789" };
            var refused = Assert.Throws<Diffusion.ConfigException>(() => ServingNodeConfig.Parse(ServingNodeConfig.Load(null, new Dictionary<string, string?>(), noKey)));
            Assert.Contains("islands:serving:sources:key", refused.Message);
        }
        // The serving nodes refuse to start without a key: compose passes ISLANDS_API_KEYS through, empty when unset.
        Assert.Throws<Diffusion.ConfigException>(() => ServingNodeConfig.Parse(ServingNodeConfig.Load(null, new Dictionary<string, string?>(),
            new Hashtable(servers[0].Value.Environment))));
    }
}
