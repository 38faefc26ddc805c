using System.Collections;
using System.Text.RegularExpressions;
using Akka.Configuration;
using Islands.Diffusion;
using Islands.Hosting.Configuration;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace Islands.Hosting;

/// <summary>
/// Reads an island node's configuration (<see cref="NodeConfiguration"/>: <c>config/island.json</c> beside the executable,
/// the JSON file given with --config, ISLANDS_* environment variables, command-line options) into its settings; akka.*
/// comes from <c>hocon/island.conf</c> and the HOCON file named by <c>islands:akkaConfig</c>.
/// </summary>
public static class IslandNodeConfig
{
    public const string DefaultsFile = "config/island.json";
    public const string AkkaDefaultsFile = "hocon/island.conf";

    /// <summary>The documented environment variables of a node, and the key each one sets.</summary>
    public static readonly IReadOnlyDictionary<string, string> EnvironmentKeys = new Dictionary<string, string>
    {
        ["ISLANDS_ISLAND"] = "islands:island",
        ["ISLANDS_JOB"] = "islands:job",
        ["ISLANDS_STORE"] = "islands:store",
        ["ISLANDS_HOSTNAME"] = "islands:hostname",
        ["ISLANDS_PUBLIC_HOSTNAME"] = "islands:publicHostname",
        ["ISLANDS_PORT"] = "islands:port",
        ["ISLANDS_SEED_NODES"] = "islands:seedNodes",
        ["ISLANDS_CONTACT_POINTS"] = "islands:bootstrap:contactPoints",
        ["ISLANDS_REQUIRED_CONTACT_POINTS"] = "islands:bootstrap:requiredContactPoints",
        ["ISLANDS_HTTP_HOSTNAME"] = "islands:http:hostname",
        ["ISLANDS_HTTP_PORT"] = "islands:http:port",
        ["ISLANDS_JOURNAL_PROVIDER"] = "islands:journal:provider",
        ["ISLANDS_JOURNAL_CONNECTION_STRING"] = "islands:journal:connectionString",
        ["ISLANDS_SPLIT_BRAIN_STABLE_AFTER"] = "islands:splitBrain:stableAfter",
        ["ISLANDS_TLS_ENABLED"] = "islands:tls:enabled",
        ["ISLANDS_TLS_CERTIFICATE"] = "islands:tls:certificate",
        ["ISLANDS_TLS_PASSWORD"] = "islands:tls:password",
        ["ISLANDS_TLS_TRUSTED_THUMBPRINTS"] = "islands:tls:trustedThumbprints",
        ["ISLANDS_TELEMETRY_EXPORTER"] = "islands:telemetry:exporter",
        ["ISLANDS_OTLP_ENDPOINT"] = "islands:telemetry:otlpEndpoint",
        ["ISLANDS_SERVING_CONTACTS"] = "islands:servingContacts",
        ["ISLANDS_PUBLICATION_KEYS"] = "islands:publication:keys",
        ["ISLANDS_PUBLICATION_KEYS_FILE"] = "islands:publication:keysFile",
        ["ISLANDS_AKKA_CONFIG"] = "islands:akkaConfig",
    };

    /// <param name="options">Keys set by command-line options (null values are left out).</param>
    public static IConfigurationRoot Load(string? configFile, IReadOnlyDictionary<string, string?> options, IDictionary? environment = null,
        string? defaultsFile = null) =>
        NodeConfiguration.Build(defaultsFile ?? Path.Combine(AppContext.BaseDirectory, DefaultsFile), configFile, options, environment,
            EnvironmentKeys, ListKeys);

    private static readonly HashSet<string> ListKeys = NodeConfiguration.ListKeys(typeof(IslandNodeOptions), IslandNodeOptions.Section);

    public static IslandNodeSettings Parse(IConfiguration configuration)
    {
        var o = NodeConfiguration.Read<IslandNodeOptions, IslandNodeOptionsValidator>(configuration, IslandNodeOptions.Section);
        var island = o.Island!;
        var store = o.Store!;
        var provider = o.Journal.Provider!.ToLowerInvariant();
        var connection = string.IsNullOrWhiteSpace(o.Journal.ConnectionString)
            ? $"Data Source={Path.Combine(Path.GetFullPath(Path.Combine(store, island)), "journal.db")}"
            : o.Journal.ConnectionString;
        var self = ClusterFormation.SelfContact(o.PublicHostname, o.Hostname!, o.Http.Port);
        return new IslandNodeSettings
        {
            Options = o,
            Island = island,
            Job = ParseJob(o.Job!, o.Training),
            Store = store,
            Hostname = o.Hostname!,
            PublicHostname = string.IsNullOrWhiteSpace(o.PublicHostname) ? null : o.PublicHostname,
            Port = o.Port,
            Formation = ClusterFormation.From(o.Bootstrap, o.SeedNodes, self),
            HttpHostname = o.Http.Hostname!,
            HttpPort = o.Http.Port,
            JournalProvider = provider,
            JournalConnectionString = connection,
            ChunkSteps = o.ChunkSteps,
            MinBackoff = NodeConfiguration.Duration(o.Backoff.Min)!.Value,
            MaxBackoff = NodeConfiguration.Duration(o.Backoff.Max)!.Value,
            StableAfter = NodeConfiguration.Duration(o.SplitBrain.StableAfter)!.Value,
            Tls = new TlsSettings(NodeConfiguration.Switch(o.Tls.Enabled) ?? false, o.Tls.Certificate ?? "", o.Tls.Password ?? "",
                o.Tls.TrustedThumbprints),
            TelemetryExporter = o.Telemetry.Exporter!.ToLowerInvariant(),
            OtlpEndpoint = o.Telemetry.OtlpEndpoint!,
            ServingContacts = o.ServingContacts,
            TorchThreads = o.TorchThreads,
            LeaseTimeToLive = NodeConfiguration.Duration(o.Lease.TimeToLive)!.Value,
            PublicationKeys = NodeConfiguration.KeysWithFile(o.Publication.Keys, o.Publication.KeysFile, "islands:publication:keysFile"),
            Hocon = NodeConfiguration.Akka(Path.Combine(AppContext.BaseDirectory, AkkaDefaultsFile), o.AkkaConfig, "islands:akkaConfig"),
        };
    }

    /// <summary>Parses a duration given on a command line (500ms, 5s, 1m).</summary>
    public static TimeSpan ParseDuration(string option, string text) =>
        NodeConfiguration.Duration(text) is { } value && value > TimeSpan.Zero ? value
            : throw new ConfigException(option, $"'{text}' is not a duration such as 500ms, 5s or 1m");

    /// <summary>A registered method's job (expert:K, monolith, router, ...), with the training section read as the method's config.</summary>
    public static Diffusion.Training.TrainingJob ParseJob(string job, IConfigurationSection? training) =>
        MethodConfigReader.Job(job, training, "islands:job", "islands:training");
}

/// <summary>Checks <see cref="IslandNodeOptions"/> at start (registered with the Options machinery); failures name the key.</summary>
public sealed partial class IslandNodeOptionsValidator : IValidateOptions<IslandNodeOptions>
{
    public ValidateOptionsResult Validate(string? name, IslandNodeOptions o)
    {
        var c = new SettingChecks(IslandNodeOptions.Section);
        if (!IslandName().IsMatch(c.Required("island", o.Island)))
            c.Fail("island", $"'{o.Island}' must be 1-40 characters of a-z, 0-9 and '-', starting with a letter or digit");
        c.Required("job", o.Job);
        c.Required("store", o.Store);
        var hostname = c.Required("hostname", o.Hostname);
        c.Required("http:hostname", o.Http.Hostname);
        c.Range("port", o.Port, 0, 65535);
        c.Range("http:port", o.Http.Port, 0, 65535);
        c.OneOf("journal:provider", o.Journal.Provider, "sqlite", "postgresql");
        if (o.Journal.Provider?.ToLowerInvariant() == "postgresql" && string.IsNullOrWhiteSpace(o.Journal.ConnectionString))
            c.Fail("journal:connectionString", "required with the postgresql provider (ISLANDS_JOURNAL_CONNECTION_STRING)");
        c.OneOf("telemetry:exporter", o.Telemetry.Exporter, "none", "console", "otlp");
        c.Required("telemetry:otlpEndpoint", o.Telemetry.OtlpEndpoint);
        c.Range("chunkSteps", o.ChunkSteps, 1, 100_000);
        c.Range("torchThreads", o.TorchThreads, 0, 1024);
        var min = c.Duration("backoff:min", o.Backoff.Min);
        var max = c.Duration("backoff:max", o.Backoff.Max);
        if (max < min) c.Fail("backoff:max", $"{max} is shorter than {c.Key("backoff:min")} ({min})");
        c.Duration("splitBrain:stableAfter", o.SplitBrain.StableAfter);
        c.Duration("lease:timeToLive", o.Lease.TimeToLive);
        var tls = RemoteTls.Check(c, o.Tls);
        var protocol = tls.Enabled ? "akka.ssl.tcp://" : "akka.tcp://";
        var systemName = "islands-" + o.Island + "@";
        foreach (var seed in o.SeedNodes.Where(s => !s.StartsWith(protocol + systemName, StringComparison.Ordinal)))
            c.Fail("seedNodes", $"'{seed}' must start with {protocol}{systemName} (this island's actor system{(tls.Enabled ? ", over TLS" : "")})");
        foreach (var contact in o.ServingContacts)
        {
            if (!ServingContact().IsMatch(contact))
                c.Fail("servingContacts",
                    $"'{contact}' must be a serving node's receptionist, e.g. {protocol}serving-main@10.0.0.5:5053/system/receptionist");
            // One remoting transport per node: an island over TLS reaches only serving over TLS, and plain only plain.
            else if (!contact.StartsWith(protocol, StringComparison.Ordinal))
                c.Fail("servingContacts", $"'{contact}' must start with {protocol}: this island's remoting TLS is {(tls.Enabled ? "on" : "off")}, " +
                    "and serving's must be too");
        }
        ClusterFormation.Check(c, o.Bootstrap, o.SeedNodes, ClusterFormation.SelfContact(o.PublicHostname, hostname, o.Http.Port), o.Http.Port);
        c.Keys("publication:keys", o.Publication.Keys);
        c.File("publication:keysFile", o.Publication.KeysFile, "file");
        c.File("akkaConfig", o.AkkaConfig, "HOCON file");
        return c.Result;
    }

    [GeneratedRegex("^[a-z0-9][a-z0-9-]{0,39}$")]
    private static partial Regex IslandName();

    [GeneratedRegex(@"^akka(\.ssl)?\.tcp://serving-[a-z0-9][a-z0-9-]{0,39}@[^/:]+:[0-9]{1,5}/system/receptionist$")]
    private static partial Regex ServingContact();
}
