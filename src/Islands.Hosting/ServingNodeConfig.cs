using System.Collections;
using System.Text.RegularExpressions;
using Akka.Configuration;
using Islands.Actors.Serving;
using Islands.Diffusion;

namespace Islands.Hosting;

/// <summary>
/// Reads a serving node's configuration with the same layers as an island node's: <c>hocon/serving.conf</c>, the file
/// given with --config, command-line options, then ISLANDS_* environment variables. Invalid values name their key.
/// </summary>
public static partial class ServingNodeConfig
{
    public const string DefaultsFile = "hocon/serving.conf";

    /// <summary>The environment variables a serving node reads, and the configuration key each one sets.</summary>
    public static readonly IReadOnlyDictionary<string, string> EnvironmentKeys = new Dictionary<string, string>
    {
        ["ISLANDS_SERVING_NAME"] = "islands.serving.name",
        ["ISLANDS_STORE"] = "islands.serving.store",
        ["ISLANDS_SERVING_RESULTS"] = "islands.serving.results",
        ["ISLANDS_HOSTNAME"] = "islands.serving.hostname",
        ["ISLANDS_PUBLIC_HOSTNAME"] = "islands.serving.public-hostname",
        ["ISLANDS_PORT"] = "islands.serving.port",
        ["ISLANDS_SEED_NODES"] = "islands.serving.seed-nodes",
        ["ISLANDS_CONTACT_POINTS"] = "islands.serving.bootstrap.contact-points",
        ["ISLANDS_REQUIRED_CONTACT_POINTS"] = "islands.serving.bootstrap.required-contact-points",
        ["ISLANDS_HTTP_HOSTNAME"] = "islands.serving.http.hostname",
        ["ISLANDS_HTTP_PORT"] = "islands.serving.http.port",
        ["ISLANDS_API_KEYS"] = "islands.serving.api-keys",
        ["ISLANDS_API_KEYS_FILE"] = "islands.serving.api-keys-file",
        ["ISLANDS_SERVING_PRECISION"] = "islands.serving.precision",
        ["ISLANDS_SPLIT_BRAIN_STABLE_AFTER"] = "islands.serving.split-brain.stable-after",
        ["ISLANDS_SPLIT_BRAIN_LEASE_CONNECTION_STRING"] = "islands.serving.split-brain.lease-connection-string",
        ["ISLANDS_TELEMETRY_EXPORTER"] = "islands.serving.telemetry.exporter",
        ["ISLANDS_OTLP_ENDPOINT"] = "islands.serving.telemetry.otlp-endpoint",
        ["ISLANDS_SOURCES"] = "islands.serving.sources.endpoints",
        ["ISLANDS_SOURCE_KEY"] = "islands.serving.sources.key",
        ["ISLANDS_SOURCE_KEY_FILE"] = "islands.serving.sources.key-file",
        ["ISLANDS_TLS_ENABLED"] = "islands.serving.tls.enabled",
        ["ISLANDS_TLS_CERTIFICATE"] = "islands.serving.tls.certificate",
        ["ISLANDS_TLS_PASSWORD"] = "islands.serving.tls.password",
        ["ISLANDS_TLS_TRUSTED_THUMBPRINTS"] = "islands.serving.tls.trusted-thumbprints",
    };

    private static readonly HashSet<string> ListKeys = ["islands.serving.seed-nodes", "islands.serving.bootstrap.contact-points",
        "islands.serving.api-keys", "islands.serving.sources.endpoints", "islands.serving.tls.trusted-thumbprints"];

    public static Config Load(string? configFile, IReadOnlyDictionary<string, string?> options, IDictionary? environment = null,
        string? defaultsFile = null) =>
        IslandNodeConfig.LoadLayers(defaultsFile ?? Path.Combine(AppContext.BaseDirectory, DefaultsFile), configFile, options, environment,
            EnvironmentKeys, ListKeys);

    public static ServingNodeSettings Parse(Config config)
    {
        const string p = "islands.serving.";
        var name = IslandNodeConfig.String(config, p + "name");
        if (!Name().IsMatch(name))
            throw new ConfigException(p + "name", $"'{name}' must be 1-40 characters of a-z, 0-9 and '-', starting with a letter or digit");
        var store = Path.GetFullPath(IslandNodeConfig.String(config, p + "store"));
        var results = config.GetString(p + "results", "");
        results = string.IsNullOrWhiteSpace(results) ? Path.Combine(Path.GetDirectoryName(store.TrimEnd('/')) ?? store, "serving-results")
            : Path.GetFullPath(results);
        var precision = IslandNodeConfig.String(config, p + "precision");
        if (precision is not ("fp32" or "bf16")) throw new ConfigException(p + "precision", $"'{precision}' must be fp32 or bf16");
        var exporter = IslandNodeConfig.String(config, p + "telemetry.exporter").ToLowerInvariant();
        if (exporter is not ("none" or "console" or "otlp"))
            throw new ConfigException(p + "telemetry.exporter", $"'{exporter}' must be none, console or otlp");

        var keys = IslandNodeConfig.Keys(config, p + "api-keys", p + "api-keys-file");
        var anonymous = IslandNodeConfig.Bool(config, p + "allow-anonymous");
        if (keys.Count == 0 && !anonymous)
            throw new ConfigException(p + "api-keys", "no API key configured: set ISLANDS_API_KEYS, api-keys or api-keys-file (or allow-anonymous " +
                "= on for a private test)");

        var tls = RemoteTls.Parse(config, p);
        var seeds = config.GetStringList(p + "seed-nodes") ?? [];
        var prefix = $"{(tls.Enabled ? "akka.ssl.tcp" : "akka.tcp")}://serving-{name}@";
        foreach (var seed in seeds)
            if (!seed.StartsWith(prefix, StringComparison.Ordinal))
                throw new ConfigException(p + "seed-nodes",
                    $"'{seed}' must start with {prefix} (this serving cluster's actor system{(tls.Enabled ? ", over TLS" : "")})");

        long frame;
        try
        {
            frame = config.GetByteSize("akka.remote.dot-netty.tcp.maximum-frame-size") ?? 128000;
        }
        catch (Exception e) when (e is FormatException or ConfigurationException)
        {
            throw new ConfigException("akka.remote.dot-netty.tcp.maximum-frame-size",
                $"'{config.GetString("akka.remote.dot-netty.tcp.maximum-frame-size")}' is not a size such as 4MiB");
        }
        var maxRows = IslandNodeConfig.Int(config, p + "batching.max-rows", 1, 4096);
        var serving = new ServingSettings(store, results, precision, maxRows, IslandNodeConfig.Duration(config, p + "batching.max-wait"),
            IslandNodeConfig.Duration(config, p + "expert-deadline"), IslandNodeConfig.Duration(config, p + "expert-cooldown"),
            IslandNodeConfig.Duration(config, p + "request-timeout"), IslandNodeConfig.Duration(config, p + "progress-timeout"),
            IslandNodeConfig.Duration(config, p + "rescan-interval"), frame, IslandNodeConfig.Duration(config, p + "results-retention"),
            IslandNodeConfig.Double(config, p + "straggler-factor", 0, 1000), IslandNodeConfig.Int(config, p + "faults.slow-expert", -1, 1023),
            IslandNodeConfig.Duration(config, p + "faults.slow-expert-delay"));
        var publicHost = config.GetString(p + "public-hostname", "");
        var hostname = IslandNodeConfig.String(config, p + "hostname");
        var httpPort = IslandNodeConfig.Int(config, p + "http.port", 0, 65535);
        var formation = ClusterFormation.Parse(config, p, [.. seeds], string.IsNullOrWhiteSpace(publicHost) ? hostname : publicHost, httpPort);
        return new ServingNodeSettings(name, hostname, string.IsNullOrWhiteSpace(publicHost) ? null : publicHost,
            IslandNodeConfig.Int(config, p + "port", 0, 65535), formation, IslandNodeConfig.String(config, p + "http.hostname"),
            httpPort, IslandNodeConfig.Int(config, p + "http.max-body-bytes", 256, 16 << 20),
            IslandNodeConfig.Int(config, p + "http.max-in-flight", 1, 100_000), keys, anonymous, serving,
            IslandNodeConfig.Duration(config, p + "passivate-after"), IslandNodeConfig.Int(config, p + "shards", 1, 10_000), frame,
            IslandNodeConfig.Duration(config, p + "split-brain.stable-after"),
            LeaseConnectionString(config, p + "split-brain.lease-connection-string"), exporter,
            IslandNodeConfig.String(config, p + "telemetry.otlp-endpoint"), ParseSources(config, p + "sources."),
            IslandNodeConfig.Duration(config, p + "http.failed-retention"), tls, config);
    }

    private static string? LeaseConnectionString(Config config, string key)
    {
        var text = config.GetString(key, "");
        if (string.IsNullOrWhiteSpace(text)) return null;
        try
        {
            var builder = new Npgsql.NpgsqlConnectionStringBuilder(text);
            if (string.IsNullOrWhiteSpace(builder.Host)) throw new ArgumentException("it names no Host");
            if (string.IsNullOrWhiteSpace(builder.Database)) throw new ArgumentException("it names no Database");
        }
        catch (ArgumentException e)
        {
            // The message never repeats the value: it holds the database password.
            throw new ConfigException(key,
                $"is not a PostgreSQL connection string ({e.Message}), e.g. Host=10.0.0.9;Username=islands;Database=serving");
        }
        return text;
    }

    private static PublicationSources ParseSources(Config config, string p)
    {
        var endpoints = new List<Uri>();
        foreach (var text in config.GetStringList(p + "endpoints") ?? [])
        {
            if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.Query.Length > 0
                || uri.Fragment.Length > 0)
                throw new ConfigException(p + "endpoints", $"'{text}' must be an island node's HTTP endpoint such as http://expert-0:8080");
            endpoints.Add(new Uri(uri.GetLeftPart(UriPartial.Path).TrimEnd('/') + "/"));
        }
        var keys = IslandNodeConfig.Keys(config, null, p + "key-file");
        if (config.GetString(p + "key", "") is { Length: > 0 } key) keys.Insert(0, IslandNodeConfig.CheckKey(p + "key", key));
        if (keys.Count > 1) throw new ConfigException(p + "key-file", "give one key (key and key-file, or a file of several, name more than one)");
        if (endpoints.Count > 0 && keys.Count == 0)
            throw new ConfigException(p + "key", "sources are given but no key: set ISLANDS_SOURCE_KEY or key-file to one of the islands' " +
                "islands.publication.keys");
        long maxBytes;
        try
        {
            maxBytes = config.GetByteSize(p + "max-file-size") ?? 0;
        }
        catch (Exception e) when (e is FormatException or ConfigurationException or OverflowException)
        {
            maxBytes = 0;
        }
        if (maxBytes <= 0)
            throw new ConfigException(p + "max-file-size", $"'{config.GetString(p + "max-file-size")}' is not a positive size such as 4GiB");
        return new PublicationSources(endpoints, keys.FirstOrDefault() ?? "", IslandNodeConfig.Duration(config, p + "interval"), maxBytes);
    }

    [GeneratedRegex("^[a-z0-9][a-z0-9-]{0,39}$")]
    private static partial Regex Name();
}
