using Islands.Hosting.Configuration;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Islands.Cli;
using Islands.Diffusion.Data;
using Islands.Diffusion.Runtime;
using Npgsql;

namespace Islands.Island.Tests;

/// <summary>
/// What the island tests share: Fashion-MNIST imported once and split into 4 random partitions (through the CLI),
/// PostgreSQL databases (one per island, as in production), free ports, and a tiny training configuration.
/// </summary>
public static class IslandTestEnvironment
{
    public const string PostgresVariable = "ISLANDS_TEST_POSTGRES";

    private static readonly Lazy<Task<(string Data, string Partitions)>> Dataset = new(async () =>
    {
        TorchSetup.Initialise(2);
        var root = Path.Combine(Path.GetTempPath(), $"islands-island-tests-{Environment.ProcessId}");
        var data = Path.Combine(root, "fm");
        var partitions = Path.Combine(root, "partitions.json");
        if (!File.Exists(Path.Combine(data, DatasetManifest.FileName)))
        {
            var import = await Run("data", "import", "--source", "fashion-mnist", "--out", data);
            if (import != 0) throw new InvalidOperationException("importing fashion-mnist failed (.ci/run installs dataset-fashion-mnist)");
        }
        if (!File.Exists(partitions) && await Run("data", "partition", "--data", data, "--k", "4", "--method", "random", "--out", partitions) != 0)
            throw new InvalidOperationException("partitioning failed");
        return (data, partitions);
    });

    private static async Task<int> Run(params string[] args)
    {
        var stderr = new StringWriter();
        var code = await IslandsCli.RunAsync([.. args, "--threads", "2"], new StringWriter(), stderr);
        if (code != 0) throw new InvalidOperationException($"islands {string.Join(' ', args)} failed: {stderr}");
        return code;
    }

    public static Task<(string Data, string Partitions)> DatasetAsync() => Dataset.Value;

    /// <summary>A self-signed certificate for TLS and client authentication, as a PKCS#12 file with password "pw"; returns its path.</summary>
    public static string SelfSignedCertificate(string path, string subject)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        File.WriteAllBytes(path, certificate.Export(X509ContentType.Pfx, "pw"));
        return path;
    }

    /// <summary>
    /// Starts a node that must be refused over TLS: null when it shut itself down while starting because its TLS handshake
    /// was refused (Akka.Remote's CoordinatedShutdown on a client-side handshake failure), else the node, still outside.
    /// </summary>
    public static async Task<T?> StartOutsiderAsync<T>(Func<Task<T>> start) where T : class
    {
        try
        {
            return await start();
        }
        catch (Exception e) when (e is OperationCanceledException || (e is InvalidOperationException && e.Message.Contains("TLS handshake failed", StringComparison.Ordinal)))
        {
            return null;
        }
    }

    public static string Thumbprint(string pfx) => X509CertificateLoader.LoadPkcs12FromFile(pfx, "pw").Thumbprint;

    public static string TempDir(string name)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"islands-island-{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>
    /// The server's connection string (without a database). Required: the chaos tests need a real PostgreSQL, and
    /// .ci/run starts one. A missing server fails the test with this message; it is never skipped.
    /// </summary>
    public static string PostgresServer() =>
        Environment.GetEnvironmentVariable(PostgresVariable) is { Length: > 0 } server
            ? server
            : throw new InvalidOperationException($"{PostgresVariable} is not set: these tests need PostgreSQL (.ci/run starts Debian's postgresql and sets it, e.g. Host=127.0.0.1;Username=islands;Password=islands)");

    /// <summary>Creates an empty database for one island and returns its connection string.</summary>
    public static async Task<string> CreateDatabaseAsync(string island)
    {
        var server = PostgresServer();
        var name = $"islands_test_{island.Replace('-', '_')}_{Guid.NewGuid():N}"[..50];
        await using (var admin = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(server) { Database = "postgres" }.ConnectionString))
        {
            await admin.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE {name}", admin);
            await create.ExecuteNonQueryAsync();
        }
        return new NpgsqlConnectionStringBuilder(server) { Database = name }.ConnectionString;
    }

    /// <summary>The distinct persistence ids in an island's journal database.</summary>
    public static async Task<IReadOnlyList<string>> PersistenceIdsAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var query = new NpgsqlCommand("SELECT DISTINCT persistence_id FROM journal ORDER BY 1", connection);
        var ids = new List<string>();
        await using var reader = await query.ExecuteReaderAsync();
        while (await reader.ReadAsync()) ids.Add(reader.GetString(0));
        return ids;
    }

    /// <summary>Training small enough for CI: an 8-channel UNet, batch 16, a checkpoint every 25 steps, split-brain decisions after 5 s.</summary>
    /// <param name="extra">More settings (colon paths below islands), over these.</param>
    public static string NodeConfig(string data, string partitions, int steps, params (string Key, object? Value)[] extra) =>
        ConfigurationJson.From(new (string, object?)[]
        {
            ("chunkSteps", 5), ("splitBrain:stableAfter", "5s"), ("lease:timeToLive", "5s"), ("backoff:min", "500ms"), ("backoff:max", "4s"),
            ("akkaConfig", AkkaConfig), ("training:dataDirectory", data), ("training:partitionsFile", partitions), ("training:steps", steps),
            ("training:batchSize", 16), ("training:warmupSteps", 5), ("training:checkpointEvery", 25), ("training:keepCheckpoints", 3),
            ("training:model:baseChannels", 8), ("training:model:channelMultipliers", new[] { 1, 2 }),
        }.Concat(extra).Select(s => ("islands:" + s.Item1, s.Item2)));

    /// <summary>Settings written as "port=70000; http:port=8080" (JSON values), as colon paths below <paramref name="prefix"/>.</summary>
    public static (string Key, object? Value)[] Pairs(string prefix, string text) =>
        [.. text.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(p =>
        {
            var eq = p.IndexOf('=');
            return ((prefix.Length == 0 ? "" : prefix + ":") + p[..eq].Trim(), (object?)System.Text.Json.Nodes.JsonNode.Parse(p[(eq + 1)..]));
        })];

    /// <summary>The tests' akka.* over hocon/island.conf: a journal that does not answer fails recovery in 5 s, not 30.</summary>
    public static string AkkaConfig
    {
        get
        {
            var path = Path.Combine(Path.GetTempPath(), "islands-tests-akka.conf");
            if (!File.Exists(path))
            {
                var temporary = path + "." + Guid.NewGuid().ToString("N");
                File.WriteAllText(temporary, "akka.persistence.journal-plugin-fallback.recovery-event-timeout = 5s\n");
                File.Move(temporary, path, overwrite: true);
            }
            return path;
        }
    }

    public static async Task Eventually(Func<Task<bool>> condition, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                if (await condition()) return;
            }
            catch (HttpRequestException) { }
            catch (TaskCanceledException) { }
            await Task.Delay(250);
        }
        throw new TimeoutException($"not within {timeout.TotalSeconds:0} s: {what}");
    }
}
