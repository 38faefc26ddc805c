using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Security.Cryptography;
using Islands.Hosting;
using Islands.Diffusion;
using Islands.Diffusion.Data;
using Islands.Diffusion.IO;
using Npgsql;

namespace Islands.Cli.Launcher;

/// <summary>One node process of a local cluster: how to start it again, and where it answers.</summary>
public sealed record ClusterProcess(string Name, string Role, string Group, int Port, int HttpPort, IReadOnlyList<string> Arguments,
    IReadOnlyDictionary<string, string> Environment, string Log, int Pid, DateTimeOffset StartedUtc, int? ViewerPort = null)
{
    public string Http => $"http://127.0.0.1:{HttpPort}";
    public string? Viewer => ViewerPort is { } port ? $"http://127.0.0.1:{port}/viewer/" : null;
}

/// <summary>The state file of a local cluster (cluster.json in its working directory).</summary>
/// <param name="Launcher">How to run the islands CLI: its executable, or dotnet and islands.dll.</param>
public sealed record ClusterState(int SchemaVersion, string Id, string Work, IReadOnlyList<string> Launcher, int K, int NodesPerIsland,
    string Journal, string Store, string ApiKeyFile, IReadOnlyList<ClusterProcess> Processes, DateTimeOffset CreatedUtc)
{
    public const int CurrentSchemaVersion = 1;
    public const string FileName = "cluster.json";
    public IEnumerable<ClusterProcess> Serving => Processes.Where(p => p.Role == "serving");
    public IEnumerable<IGrouping<string, ClusterProcess>> Islands => Processes.Where(p => p.Role == "island").GroupBy(p => p.Group);
}

/// <summary>
/// A cluster of real `islands node` and `islands serve` processes on loopback, started detached (they outlive the
/// command that started them) and recorded in cluster.json, so that `cluster status`, `cluster down` and `chaos` manage
/// exactly the processes it started. Islands of one node use SQLite; larger ones one PostgreSQL database each. Serving
/// shares no directory with the islands: each serving node fetches their publications over HTTP into its own cache.
/// </summary>
public static class LocalCluster
{
    public static string StatePath(string work) => Path.Combine(Path.GetFullPath(work), ClusterState.FileName);

    public static ClusterState Load(string work)
    {
        var path = StatePath(work);
        if (!File.Exists(path)) throw new ConfigException("--work", $"{path}: no cluster here; start one with `islands cluster up --work {work}`");
        return Json.Read<ClusterState>(path);
    }

    public static void Save(ClusterState state) => Json.WriteAtomic(StatePath(state.Work), state);

    /// <param name="islandConfig">A JSON configuration file every expert island's nodes read with --config (training settings, model
    /// size), or null.</param>
    public static async Task<ClusterState> UpAsync(string work, int experts, int nodesPerIsland, int servingNodes, int steps, int portBase,
        string? postgres, string? islandConfig, Action<string> log, CancellationToken cancel)
    {
        work = Path.GetFullPath(work);
        if (File.Exists(StatePath(work)))
        {
            var existing = Load(work);
            if (existing.Processes.Any(Alive))
                throw new ConfigException("--work", $"{work} already has a running cluster; `islands cluster down --work {work}` first");
        }
        if (experts is < 1 or > 16) throw new ConfigException("--islands", $"{experts} must be from 1 to 16 expert islands");
        if (nodesPerIsland is < 1 or > 5) throw new ConfigException("--nodes-per-island", $"{nodesPerIsland} must be from 1 to 5");
        if (servingNodes is < 0 or > 5) throw new ConfigException("--serving-nodes", $"{servingNodes} must be from 0 to 5");
        if (nodesPerIsland > 1 && string.IsNullOrWhiteSpace(postgres))
            throw new ConfigException("--postgres", "islands of several nodes share a PostgreSQL journal: give a server connection string (or " +
                "ISLANDS_POSTGRES), e.g. Host=127.0.0.1;Username=islands;Password=islands");
        if (islandConfig is not null && !File.Exists(islandConfig)) throw new ConfigException("--island-config", $"{islandConfig}: file not found");
        Directory.CreateDirectory(work);
        var data = Path.Combine(work, "data");
        var partitions = Path.Combine(work, $"partitions-k{experts}.json");
        DataPreparation.Prepare(data, partitions, experts, log);
        var store = Path.Combine(work, "islands");
        var apiKeyFile = Path.Combine(work, "api-key");
        ApiKeyAuthentication.EnsureKeyFile(apiKeyFile);
        // Serving reads no island's directory: each serving node fetches the publications over HTTP with this key.
        var publicationKeyFile = Path.Combine(work, "publication-key");
        ApiKeyAuthentication.EnsureKeyFile(publicationKeyFile);
        var executable = Launcher();
        // A new cluster gets new journal databases; bringing a stopped one up again reuses its own (its islands resume).
        var clusterId = File.Exists(StatePath(work)) ? Load(work).Id : Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4));
        var processes = new List<ClusterProcess>();
        var port = portBase;
        var servingPorts = Enumerable.Range(0, servingNodes).Select(i => portBase + 500 + i).ToArray();
        var contacts = string.Join(",", servingPorts.Select(p => $"akka.tcp://serving-local@127.0.0.1:{p}/system/receptionist"));
        var jobs = Enumerable.Range(0, experts).Select(k => ($"expert-{k}", $"expert:{k}")).Append(("router", "router"));
        foreach (var (island, job) in jobs)
        {
            var ports = Enumerable.Range(0, nodesPerIsland).Select(_ => port++).ToArray();
            // Every island trains at once on this machine: each gets its share of the cores (OpenMP would otherwise start a
            // team of all cores in every process and spin them against each other).
            var threads = Math.Max(1, Environment.ProcessorCount / (experts + 1)).ToString(CultureInfo.InvariantCulture);
            var env = new Dictionary<string, string>
            {
                ["ISLANDS_SERVING_CONTACTS"] = contacts, ["ISLANDS_PUBLICATION_KEYS_FILE"] = publicationKeyFile,
                ["OMP_NUM_THREADS"] = threads, ["MKL_NUM_THREADS"] = threads,
            };
            if (nodesPerIsland > 1)
            {
                var database = $"islands_{clusterId}_{island.Replace('-', '_')}";
                await CreateDatabaseAsync(postgres!, database, cancel);
                env["ISLANDS_JOURNAL_PROVIDER"] = "postgresql";
                env["ISLANDS_JOURNAL_CONNECTION_STRING"] = new NpgsqlConnectionStringBuilder(postgres) { Database = database }.ConnectionString;
            }
            var contactPoints = ContactPoints(ports);
            for (var n = 0; n < nodesPerIsland; n++)
            {
                var islandSteps = job == "router" ? Math.Max(100, steps * 2) : steps;
                List<string> args =
                [
                    "node", "--island", island, "--job", job, "--store", store, "--data", data, "--partitions", partitions,
                    "--steps", Str(islandSteps), "--checkpoint-every", Str(Math.Max(5, islandSteps / 10)),
                    "--port", Str(ports[n]), "--http-port", Str(ports[n] + 1000), "--threads", threads,
                ];
                if (nodesPerIsland > 1) args.AddRange(["--contact-points", contactPoints]);
                // Its training block is an expert's (TrainConfig); the router's job takes other settings and keeps its defaults.
                if (islandConfig is not null && job != "router") args.AddRange(["--config", Path.GetFullPath(islandConfig)]);
                processes.Add(Start(new ClusterProcess($"{island}-{n}", "island", island, ports[n], ports[n] + 1000, args, env,
                    Path.Combine(work, "logs", $"{island}-{n}.log"), 0, default), executable));
            }
        }
        var servingContactPoints = ContactPoints(servingPorts);
        var sources = string.Join(",", processes.Select(p => p.Http));
        // With a PostgreSQL server, the serving cluster's split-brain lease lives in a database of its own (lease-majority).
        string? servingLease = null;
        if (servingNodes > 1 && !string.IsNullOrWhiteSpace(postgres))
        {
            var database = $"islands_{clusterId}_serving";
            await CreateDatabaseAsync(postgres, database, cancel);
            servingLease = new NpgsqlConnectionStringBuilder(postgres) { Database = database }.ConnectionString;
        }
        for (var i = 0; i < servingNodes; i++)
        {
            List<string> args =
            [
                "serve", "--store", Path.Combine(work, "serving-cache", $"serving-{i}"), "--sources", sources,
                "--port", Str(servingPorts[i]), "--http-port", Str(servingPorts[i] + 1000),
            ];
            if (servingNodes > 1) args.AddRange(["--contact-points", servingContactPoints]);
            var env = new Dictionary<string, string>
            {
                ["ISLANDS_SERVING_NAME"] = "local",
                ["ISLANDS_API_KEYS_FILE"] = apiKeyFile,
                ["ISLANDS_SOURCE_KEY_FILE"] = publicationKeyFile,
                ["ISLANDS_SERVING_RESULTS"] = Path.Combine(work, "serving-results"),
                ["ISLANDS_VIEWER_PORT"] = Str(servingPorts[i] + 2000),
            };
            if (servingLease is not null) env["ISLANDS_SPLIT_BRAIN_LEASE_CONNECTION_STRING"] = servingLease;
            processes.Add(Start(new ClusterProcess($"serving-{i}", "serving", "serving", servingPorts[i], servingPorts[i] + 1000, args, env,
                Path.Combine(work, "logs", $"serving-{i}.log"), 0, default, servingPorts[i] + 2000), executable));
        }
        var state = new ClusterState(ClusterState.CurrentSchemaVersion, clusterId, work, executable, experts, nodesPerIsland,
            nodesPerIsland > 1 ? "postgresql (a database per island)" : "sqlite (a file per island)", store, apiKeyFile, processes,
            DateTimeOffset.UtcNow);
        Save(state);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(3) };
        // Every process starts at once and runs its numerics self-test: on a small machine many of them take minutes together.
        var wait = TimeSpan.FromSeconds(Math.Max(180, processes.Count * 15));
        var deadline = DateTime.UtcNow + wait;
        foreach (var process in processes)
        {
            while (!await ReadyAsync(http, process, cancel))
            {
                if (!Alive(process)) throw new IslandsException($"{process.Name} exited during start-up; see {process.Log}");
                if (DateTime.UtcNow > deadline)
                    throw new IslandsException($"{process.Name} is not ready after {wait.TotalSeconds:0} s; see {process.Log}");
                await Task.Delay(500, cancel);
            }
            log($"{process.Name}: ready at {process.Http}");
        }
        return state;
    }

    /// <summary>This islands CLI: the running executable, its apphost beside it, or dotnet with islands.dll (in tests).</summary>
    public static IReadOnlyList<string> Launcher()
    {
        if (Environment.ProcessPath is { } self && Path.GetFileName(self) == "islands") return [self];
        var beside = Path.Combine(AppContext.BaseDirectory, "islands");
        if (File.Exists(beside)) return [beside];
        var dll = Path.Combine(AppContext.BaseDirectory, "islands.dll");
        if (File.Exists(dll) && Environment.ProcessPath is { } host && Path.GetFileNameWithoutExtension(host) == "dotnet") return [host, dll];
        if (File.Exists(dll)) return ["dotnet", dll];
        throw new IslandsException($"cannot find the islands executable beside {AppContext.BaseDirectory}");
    }

    private static string Str(int value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>The nodes' HTTP endpoints (remoting port + 1000), where each answers /cluster/seed-nodes.</summary>
    private static string ContactPoints(IEnumerable<int> remotingPorts) => string.Join(",", remotingPorts.Select(p => $"127.0.0.1:{Str(p + 1000)}"));

    private static async Task CreateDatabaseAsync(string server, string database, CancellationToken cancel)
    {
        await using var admin = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(server) { Database = "postgres" }.ConnectionString);
        await admin.OpenAsync(cancel);
        await using var exists = new NpgsqlCommand("SELECT 1 FROM pg_database WHERE datname = @name", admin);
        exists.Parameters.AddWithValue("name", database);
        if (await exists.ExecuteScalarAsync(cancel) is not null) return;
        await using var create = new NpgsqlCommand($"CREATE DATABASE {database}", admin);
        await create.ExecuteNonQueryAsync(cancel);
    }

    /// <summary>Starts a node detached from this process (its own session; output appended to its log) and records its pid.</summary>
    public static ClusterProcess Start(ClusterProcess process, IReadOnlyList<string> launcher)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(process.Log)!);
        var info = new ProcessStartInfo("setsid") { UseShellExecute = false, RedirectStandardInput = true };
        // sh only redirects and execs, so the recorded pid is the node's own.
        foreach (var a in (string[])["sh", "-c", "exec \"$0\" \"$@\" >>\"$ISLANDS_NODE_LOG\" 2>&1 </dev/null", .. launcher, .. process.Arguments])
            info.ArgumentList.Add(a);
        info.Environment["ISLANDS_NODE_LOG"] = process.Log;
        foreach (var (key, value) in process.Environment) info.Environment[key] = value;
        using var started = Process.Start(info) ?? throw new IslandsException($"could not start {process.Name}");
        return process with { Pid = started.Id, StartedUtc = DateTimeOffset.UtcNow };
    }

    /// <summary>Whether the recorded pid is still this node (not a recycled pid of another program).</summary>
    public static bool Alive(ClusterProcess process)
    {
        if (process.Pid <= 0) return false;
        try
        {
            var cmdline = File.ReadAllText($"/proc/{process.Pid}/cmdline");
            return cmdline.Contains(string.Join('\0', process.Arguments.Take(3)), StringComparison.Ordinal);
        }
        catch (IOException)
        {
            return false;
        }
    }

    public static async Task<bool> ReadyAsync(HttpClient http, ClusterProcess process, CancellationToken cancel)
    {
        try
        {
            using var response = await http.GetAsync(process.Http + "/health/ready", cancel);
            return response.IsSuccessStatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancel.IsCancellationRequested)
        {
            return false;
        }
    }

    /// <summary>The training steps an island's nodes were started with (their --steps), or null if they were not given any.</summary>
    public static long? PlannedSteps(IEnumerable<ClusterProcess> nodes) => nodes
        .Select(n => n.Arguments.ToList())
        .Select(a => a.IndexOf("--steps") is var i and >= 0 && i + 1 < a.Count
            && long.TryParse(a[i + 1], NumberStyles.None, CultureInfo.InvariantCulture, out var steps) ? steps : (long?)null)
        .FirstOrDefault(s => s is not null);

    public static async Task<IslandStatus?> IslandStatusAsync(HttpClient http, IEnumerable<ClusterProcess> nodes, CancellationToken cancel)
    {
        foreach (var node in nodes.Where(Alive))
        {
            try
            {
                var status = await http.GetFromJsonAsync<IslandStatus>(node.Http + "/status", Json.Options, cancel);
                if (status?.Job is not null) return status;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancel.IsCancellationRequested)
            {
            }
        }
        return null;
    }

    /// <summary>SIGTERM to every node (a training node commits first), then SIGKILL to any still running after the grace period.</summary>
    public static async Task<int> DownAsync(ClusterState state, TimeSpan grace, Action<string> log)
    {
        var alive = state.Processes.Where(Alive).ToList();
        foreach (var p in alive) Signal(p.Pid, "TERM");
        var deadline = DateTime.UtcNow + grace;
        while (alive.Any(Alive) && DateTime.UtcNow < deadline) await Task.Delay(250);
        foreach (var p in alive.Where(Alive))
        {
            log($"{p.Name}: still running after {grace.TotalSeconds:0} s; killing it");
            Signal(p.Pid, "KILL");
        }
        return alive.Count;
    }

    public static void Signal(int pid, string signal)
    {
        using var kill =
            Process.Start(new ProcessStartInfo("kill", ["-" + signal, pid.ToString(CultureInfo.InvariantCulture)]) { UseShellExecute = false });
        kill?.WaitForExit();
    }
}
