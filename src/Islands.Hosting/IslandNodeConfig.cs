using System.Collections;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using Akka.Configuration;
using Akka.Configuration.Hocon;
using Islands.Diffusion;
using Islands.Diffusion.Configs;
using Islands.Diffusion.Routing;
using Islands.Diffusion.Methods;
using Islands.Diffusion.Training;

namespace Islands.Hosting;

/// <summary>
/// Reads an island node's configuration. Precedence, lowest first: <c>hocon/island.conf</c> beside the executable, the
/// file given with --config, command-line options, ISLANDS_* environment variables. Every invalid value is reported with
/// the key it came from.
/// </summary>
public static partial class IslandNodeConfig
{
    public const string DefaultsFile = "hocon/island.conf";

    /// <summary>The environment variables a node reads, and the configuration key each one sets.</summary>
    public static readonly IReadOnlyDictionary<string, string> EnvironmentKeys = new Dictionary<string, string>
    {
        ["ISLANDS_ISLAND"] = "islands.island",
        ["ISLANDS_JOB"] = "islands.job",
        ["ISLANDS_STORE"] = "islands.store",
        ["ISLANDS_HOSTNAME"] = "islands.hostname",
        ["ISLANDS_PUBLIC_HOSTNAME"] = "islands.public-hostname",
        ["ISLANDS_PORT"] = "islands.port",
        ["ISLANDS_SEED_NODES"] = "islands.seed-nodes",
        ["ISLANDS_CONTACT_POINTS"] = "islands.bootstrap.contact-points",
        ["ISLANDS_REQUIRED_CONTACT_POINTS"] = "islands.bootstrap.required-contact-points",
        ["ISLANDS_HTTP_HOSTNAME"] = "islands.http.hostname",
        ["ISLANDS_HTTP_PORT"] = "islands.http.port",
        ["ISLANDS_JOURNAL_PROVIDER"] = "islands.journal.provider",
        ["ISLANDS_JOURNAL_CONNECTION_STRING"] = "islands.journal.connection-string",
        ["ISLANDS_SPLIT_BRAIN_STABLE_AFTER"] = "islands.split-brain.stable-after",
        ["ISLANDS_TLS_ENABLED"] = "islands.tls.enabled",
        ["ISLANDS_TLS_CERTIFICATE"] = "islands.tls.certificate",
        ["ISLANDS_TLS_PASSWORD"] = "islands.tls.password",
        ["ISLANDS_TLS_TRUSTED_THUMBPRINTS"] = "islands.tls.trusted-thumbprints",
        ["ISLANDS_TELEMETRY_EXPORTER"] = "islands.telemetry.exporter",
        ["ISLANDS_OTLP_ENDPOINT"] = "islands.telemetry.otlp-endpoint",
        ["ISLANDS_SERVING_CONTACTS"] = "islands.serving-contacts",
        ["ISLANDS_PUBLICATION_KEYS"] = "islands.publication.keys",
        ["ISLANDS_PUBLICATION_KEYS_FILE"] = "islands.publication.keys-file",
    };

    private static readonly HashSet<string> ListKeys = ["islands.seed-nodes", "islands.bootstrap.contact-points", "islands.tls.trusted-thumbprints",
        "islands.serving-contacts", "islands.publication.keys"];

    /// <param name="options">Configuration keys set by command-line options (null values are left out).</param>
    public static Config Load(string? configFile, IReadOnlyDictionary<string, string?> options, IDictionary? environment = null,
        string? defaultsFile = null) =>
        LoadLayers(defaultsFile ?? Path.Combine(AppContext.BaseDirectory, DefaultsFile), configFile, options, environment, EnvironmentKeys, ListKeys);

    /// <summary>
    /// The layering shared by every node kind, lowest first: defaults file, --config file, environment variables, command-line
    /// options (as .NET and Docker users expect: an option typed for this run beats the environment a container was given).
    /// </summary>
    internal static Config LoadLayers(string defaultsFile, string? configFile, IReadOnlyDictionary<string, string?> options, IDictionary? environment,
        IReadOnlyDictionary<string, string> environmentKeys, IReadOnlySet<string> listKeys)
    {
        var defaults = ParseFile(defaultsFile);
        var file = configFile is null ? Config.Empty : ParseFile(configFile);
        var fromOptions = FromPairs(options.Where(p => p.Value is not null).Select(p => (p.Key, p.Value!)), listKeys);
        var env = environment ?? Environment.GetEnvironmentVariables();
        var fromEnvironment = FromPairs(environmentKeys.Where(p => env.Contains(p.Key) && env[p.Key] is string)
            .Select(p => (p.Value, (string)env[p.Key]!)), listKeys);
        return fromOptions.WithFallback(fromEnvironment).WithFallback(file).WithFallback(defaults);
    }

    private static Config ParseFile(string path)
    {
        if (!File.Exists(path)) throw new ConfigException("--config", $"{path}: file not found");
        try
        {
            return ConfigurationFactory.ParseString(File.ReadAllText(path));
        }
        catch (Exception e) when (e is ConfigurationException or FormatException)
        {
            throw new ConfigException("--config", $"{path}: not valid HOCON ({e.Message})");
        }
    }

    private static Config FromPairs(IEnumerable<(string Key, string Value)> pairs, IReadOnlySet<string> listKeys)
    {
        var lines = pairs.Select(p => listKeys.Contains(p.Key)
            ? $"{p.Key} = [{string.Join(", ", p.Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(Quote))}]"
            : $"{p.Key} = {Quote(p.Value)}");
        return ConfigurationFactory.ParseString(string.Join("\n", lines));
    }

    internal static string Quote(string value) => JsonSerializer.Serialize(value);

    public static IslandNodeSettings Parse(Config config)
    {
        var island = String(config, "islands.island");
        if (!IslandName().IsMatch(island)) throw new ConfigException("islands.island",
            $"'{island}' must be 1-40 characters of a-z, 0-9 and '-', starting with a letter or digit");
        var jobName = String(config, "islands.job");
        var job = ParseJob(jobName, config.GetConfig("islands.training") ?? Config.Empty);
        var provider = String(config, "islands.journal.provider").ToLowerInvariant();
        if (provider is not ("sqlite" or "postgresql")) throw new ConfigException("islands.journal.provider",
            $"'{provider}' must be sqlite or postgresql");
        var store = String(config, "islands.store");
        var connection = config.GetString("islands.journal.connection-string", "");
        if (string.IsNullOrWhiteSpace(connection))
        {
            if (provider == "postgresql") throw new ConfigException("islands.journal.connection-string",
                "required with the postgresql provider (ISLANDS_JOURNAL_CONNECTION_STRING)");
            connection = $"Data Source={Path.Combine(Path.GetFullPath(Path.Combine(store, island)), "journal.db")}";
        }
        var exporter = String(config, "islands.telemetry.exporter").ToLowerInvariant();
        if (exporter is not ("none" or "console" or "otlp")) throw new ConfigException("islands.telemetry.exporter",
            $"'{exporter}' must be none, console or otlp");
        var chunk = Int(config, "islands.chunk-steps", 1, 100_000);
        var minBackoff = Duration(config, "islands.backoff.min");
        var maxBackoff = Duration(config, "islands.backoff.max");
        if (maxBackoff < minBackoff) throw new ConfigException("islands.backoff.max",
            $"{maxBackoff} is shorter than islands.backoff.min ({minBackoff})");
        var tls = RemoteTls.Parse(config, "islands.");
        var seeds = config.GetStringList("islands.seed-nodes") ?? [];
        var protocol = tls.Enabled ? "akka.ssl.tcp://" : "akka.tcp://";
        var systemName = "islands-" + island + "@";
        foreach (var seed in seeds)
        {
            if (!seed.StartsWith(protocol + systemName, StringComparison.Ordinal))
                throw new ConfigException("islands.seed-nodes",
                    $"'{seed}' must start with {protocol}{systemName} (this island's actor system{(tls.Enabled ? ", over TLS" : "")})");
        }
        var contacts = config.GetStringList("islands.serving-contacts") ?? [];
        foreach (var contact in contacts)
        {
            if (!ServingContact().IsMatch(contact))
                throw new ConfigException("islands.serving-contacts",
                    $"'{contact}' must be a serving node's receptionist, e.g. {protocol}serving-main@10.0.0.5:5053/system/receptionist");
            // One remoting transport per node: an island over TLS reaches only serving over TLS, and plain only plain.
            if (!contact.StartsWith(protocol, StringComparison.Ordinal))
                throw new ConfigException("islands.serving-contacts",
                    $"'{contact}' must start with {protocol}: this island's remoting TLS is {(tls.Enabled ? "on" : "off")}, " +
                    "and serving's must be too");
        }
        var publicHost = config.GetString("islands.public-hostname", "");
        var hostname = String(config, "islands.hostname");
        var httpPort = Int(config, "islands.http.port", 0, 65535);
        var formation = ClusterFormation.Parse(config, "islands.", [.. seeds], string.IsNullOrWhiteSpace(publicHost) ? hostname : publicHost,
            httpPort);
        return new IslandNodeSettings(island, job, store, hostname, string.IsNullOrWhiteSpace(publicHost) ? null : publicHost,
            Int(config, "islands.port", 0, 65535), formation, String(config, "islands.http.hostname"),
            httpPort, provider, connection, chunk, minBackoff, maxBackoff, Duration(config, "islands.split-brain.stable-after"),
            tls, exporter, String(config, "islands.telemetry.otlp-endpoint"), [.. contacts], Int(config, "islands.torch-threads", 0, 1024),
            Duration(config, "islands.lease.time-to-live"), Keys(config, "islands.publication.keys", "islands.publication.keys-file"), config);
    }

    /// <summary>
    /// Bearer keys from a list and a file (one per line, '#' comments). Every key must be at least 16 printable
    /// characters; the error names the key's setting, never the key.
    /// </summary>
    internal static List<string> Keys(Config config, string? listKey, string fileKey)
    {
        var keys = listKey is null ? [] : (config.GetStringList(listKey) ?? []).Where(k => k.Length > 0).ToList();
        var keysFile = config.GetString(fileKey, "");
        if (!string.IsNullOrWhiteSpace(keysFile))
        {
            if (!File.Exists(keysFile)) throw new ConfigException(fileKey, $"'{keysFile}': file not found");
            keys.AddRange(File.ReadAllLines(keysFile).Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')));
        }
        foreach (var key in keys) CheckKey(listKey ?? fileKey, key);
        return keys;
    }

    internal static string CheckKey(string setting, string key) =>
        key.Length < 16 || key.Any(c => c <= ' ' || c > '~')
            ? throw new ConfigException(setting, "every key must be at least 16 printable characters without spaces (a key is never shown)")
            : key;

    internal static string String(Config config, string key)
    {
        var value = config.GetString(key, null);
        if (string.IsNullOrWhiteSpace(value)) throw new ConfigException(key, "is required");
        return value;
    }

    internal static int Int(Config config, string key, int min, int max)
    {
        var text = config.GetString(key, null);
        if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) || value < min || value > max)
            throw new ConfigException(key, $"'{text}' must be an integer in {min}..{max}");
        return value;
    }

    internal static double Double(Config config, string key, double min, double max)
    {
        var text = config.GetString(key, null);
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) || !double.IsFinite(value)
            || value < min || value > max)
            throw new ConfigException(key,
                $"'{text}' must be a number in {min.ToString(CultureInfo.InvariantCulture)}..{max.ToString(CultureInfo.InvariantCulture)}");
        return value;
    }

    public static bool Bool(Config config, string key)
    {
        var text = config.GetString(key, "off").ToLowerInvariant();
        return text switch
        {
            "on" or "true" or "yes" or "1" => true,
            "off" or "false" or "no" or "0" => false,
            _ => throw new ConfigException(key, $"'{text}' must be on or off"),
        };
    }

    internal static TimeSpan Duration(Config config, string key)
    {
        try
        {
            var value = config.GetTimeSpan(key, null, allowInfinite: false);
            if (value <= TimeSpan.Zero) throw new ConfigException(key, $"{value} must be positive");
            return value;
        }
        catch (Exception e) when (e is FormatException or ConfigurationException or OverflowException)
        {
            throw new ConfigException(key, $"'{config.GetString(key, "")}' is not a duration such as 500ms, 5s or 1m");
        }
    }

    /// <summary>Parses a HOCON duration given on a command line (500ms, 5s, 1m).</summary>
    public static TimeSpan ParseDuration(string option, string text)
    {
        try
        {
            return Duration(ConfigurationFactory.ParseString($"value = {Quote(text)}"), "value");
        }
        catch (ConfigException)
        {
            throw new ConfigException(option, $"'{text}' is not a duration such as 500ms, 5s or 1m");
        }
    }

    [GeneratedRegex("^[a-z0-9][a-z0-9-]{0,39}$")]
    private static partial Regex IslandName();

    [GeneratedRegex(@"^akka(\.ssl)?\.tcp://serving-[a-z0-9][a-z0-9-]{0,39}@[^/:]+:[0-9]{1,5}/system/receptionist$")]
    private static partial Regex ServingContact();
}
