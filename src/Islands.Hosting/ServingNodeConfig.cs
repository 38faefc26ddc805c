using System.Collections;
using System.Text.RegularExpressions;
using Islands.Actors.Serving;
using Islands.Diffusion;
using Islands.Hosting.Configuration;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace Islands.Hosting;

/// <summary>
/// Reads a serving node's configuration with the same layers as an island node's (<c>config/serving.json</c>, --config,
/// environment, command line) into its settings; akka.* comes from <c>hocon/serving.conf</c> and islands:serving:akkaConfig.
/// </summary>
public static class ServingNodeConfig
{
    public const string DefaultsFile = "config/serving.json";
    public const string AkkaDefaultsFile = "hocon/serving.conf";
    private const string FrameKey = "akka.remote.dot-netty.tcp.maximum-frame-size";

    /// <summary>The documented environment variables of a serving node, and the key each one sets.</summary>
    public static readonly IReadOnlyDictionary<string, string> EnvironmentKeys = new Dictionary<string, string>
    {
        ["ISLANDS_SERVING_NAME"] = "islands:serving:name",
        ["ISLANDS_STORE"] = "islands:serving:store",
        ["ISLANDS_SERVING_RESULTS"] = "islands:serving:results",
        ["ISLANDS_HOSTNAME"] = "islands:serving:hostname",
        ["ISLANDS_PUBLIC_HOSTNAME"] = "islands:serving:publicHostname",
        ["ISLANDS_PORT"] = "islands:serving:port",
        ["ISLANDS_SEED_NODES"] = "islands:serving:seedNodes",
        ["ISLANDS_CONTACT_POINTS"] = "islands:serving:bootstrap:contactPoints",
        ["ISLANDS_REQUIRED_CONTACT_POINTS"] = "islands:serving:bootstrap:requiredContactPoints",
        ["ISLANDS_HTTP_HOSTNAME"] = "islands:serving:http:hostname",
        ["ISLANDS_HTTP_PORT"] = "islands:serving:http:port",
        ["ISLANDS_VIEWER_HOSTNAME"] = "islands:serving:viewer:hostname",
        ["ISLANDS_VIEWER_PORT"] = "islands:serving:viewer:port",
        ["ISLANDS_VIEWER_ISLANDS"] = "islands:serving:viewer:islands",
        ["ISLANDS_API_KEYS"] = "islands:serving:apiKeys",
        ["ISLANDS_API_KEYS_FILE"] = "islands:serving:apiKeysFile",
        ["ISLANDS_SERVING_PRECISION"] = "islands:serving:precision",
        ["ISLANDS_SPLIT_BRAIN_STABLE_AFTER"] = "islands:serving:splitBrain:stableAfter",
        ["ISLANDS_SPLIT_BRAIN_LEASE_CONNECTION_STRING"] = "islands:serving:splitBrain:leaseConnectionString",
        ["ISLANDS_TELEMETRY_EXPORTER"] = "islands:serving:telemetry:exporter",
        ["ISLANDS_OTLP_ENDPOINT"] = "islands:serving:telemetry:otlpEndpoint",
        ["ISLANDS_SOURCES"] = "islands:serving:sources:endpoints",
        ["ISLANDS_SOURCE_KEY"] = "islands:serving:sources:key",
        ["ISLANDS_SOURCE_KEY_FILE"] = "islands:serving:sources:keyFile",
        ["ISLANDS_TLS_ENABLED"] = "islands:serving:tls:enabled",
        ["ISLANDS_TLS_CERTIFICATE"] = "islands:serving:tls:certificate",
        ["ISLANDS_TLS_PASSWORD"] = "islands:serving:tls:password",
        ["ISLANDS_TLS_TRUSTED_THUMBPRINTS"] = "islands:serving:tls:trustedThumbprints",
        ["ISLANDS_AKKA_CONFIG"] = "islands:serving:akkaConfig",
    };

    public static IConfigurationRoot Load(string? configFile, IReadOnlyDictionary<string, string?> options, IDictionary? environment = null,
        string? defaultsFile = null) =>
        NodeConfiguration.Build(defaultsFile ?? Path.Combine(AppContext.BaseDirectory, DefaultsFile), configFile, options, environment,
            EnvironmentKeys, ListKeys);

    private static readonly HashSet<string> ListKeys = NodeConfiguration.ListKeys(typeof(ServingNodeOptions), ServingNodeOptions.Section);

    public static ServingNodeSettings Parse(IConfiguration configuration)
    {
        const string p = ServingNodeOptions.Section + ":";
        var o = NodeConfiguration.Read<ServingNodeOptions, ServingNodeOptionsValidator>(configuration, ServingNodeOptions.Section);
        var hocon = NodeConfiguration.Akka(Path.Combine(AppContext.BaseDirectory, AkkaDefaultsFile), o.AkkaConfig, p + "akkaConfig");
        long frame;
        try
        {
            frame = hocon.GetByteSize(FrameKey) ?? 128000;
        }
        catch (Exception e) when (e is FormatException or Akka.Configuration.ConfigurationException)
        {
            throw new ConfigException(FrameKey, $"'{hocon.GetString(FrameKey)}' is not a size such as 4MiB");
        }
        var store = Path.GetFullPath(o.Store!);
        var results = string.IsNullOrWhiteSpace(o.Results) ? Path.Combine(Path.GetDirectoryName(store.TrimEnd('/')) ?? store, "serving-results")
            : Path.GetFullPath(o.Results);
        var keys = NodeConfiguration.KeysWithFile(o.ApiKeys, o.ApiKeysFile, p + "apiKeysFile");
        var anonymous = NodeConfiguration.Switch(o.AllowAnonymous) ?? false;
        if (keys.Count == 0 && !anonymous)
            throw new ConfigException(p + "apiKeys", "no API key configured: set ISLANDS_API_KEYS, apiKeys or apiKeysFile (or allowAnonymous " +
                "= true for a private test)");
        var sourceKeys = NodeConfiguration.KeysWithFile(string.IsNullOrEmpty(o.Sources.Key) ? [] : [o.Sources.Key], o.Sources.KeyFile,
            p + "sources:keyFile");
        if (sourceKeys.Count > 1)
            throw new ConfigException(p + "sources:keyFile", "give one key (key and keyFile, or a file of several, name more than one)");
        if (o.Sources.Endpoints.Length > 0 && sourceKeys.Count == 0)
            throw new ConfigException(p + "sources:key", "sources are given but no key: set ISLANDS_SOURCE_KEY or keyFile to one of the islands' " +
                "islands:publication:keys");
        TimeSpan Duration(string? text) => NodeConfiguration.Duration(text)!.Value;
        var serving = new ServingSettings
        {
            Store = store, ResultsDirectory = results, Precision = o.Precision!.ToLowerInvariant(), MaxBatchRows = o.Batching.MaxRows,
            MaxWait = Duration(o.Batching.MaxWait), ExpertDeadline = Duration(o.ExpertDeadline), ExpertCooldown = Duration(o.ExpertCooldown),
            RequestTimeout = Duration(o.RequestTimeout), ProgressTimeout = Duration(o.ProgressTimeout), RescanInterval = Duration(o.RescanInterval),
            MaximumFrameBytes = frame, ResultRetention = Duration(o.ResultsRetention), StragglerFactor = o.StragglerFactor,
            SlowExpert = o.Faults.SlowExpert, SlowExpertDelay = Duration(o.Faults.SlowExpertDelay),
        };
        var endpoints = o.Sources.Endpoints.Select(e => new Uri(new Uri(e).GetLeftPart(UriPartial.Path).TrimEnd('/') + "/"));
        var sources = new PublicationSources([.. endpoints],
            sourceKeys.FirstOrDefault() ?? "", Duration(o.Sources.Interval), NodeConfiguration.Bytes(o.Sources.MaxFileSize)!.Value);
        var viewer = NodeConfiguration.Switch(o.Viewer.Enabled) ?? true
            ? new ViewerSettings(o.Viewer.Hostname!, o.Viewer.Port,
                o.Viewer.Islands.Length > 0 ? [.. o.Viewer.Islands.Select(e => new Uri(e.TrimEnd('/')))] : [.. sources.Endpoints],
                Duration(o.Viewer.Interval), Duration(o.Viewer.GalleryInterval))
            : null;
        return new ServingNodeSettings
        {
            Options = o,
            Name = o.Name!,
            Hostname = o.Hostname!,
            PublicHostname = string.IsNullOrWhiteSpace(o.PublicHostname) ? null : o.PublicHostname,
            Port = o.Port,
            Formation = ClusterFormation.From(o.Bootstrap, o.SeedNodes, ClusterFormation.SelfContact(o.PublicHostname, o.Hostname!, o.Http.Port)),
            HttpHostname = o.Http.Hostname!,
            HttpPort = o.Http.Port,
            MaxBodyBytes = o.Http.MaxBodyBytes,
            MaxInFlight = o.Http.MaxInFlight,
            ApiKeys = keys,
            AllowAnonymous = anonymous,
            Serving = serving,
            PassivateAfter = Duration(o.PassivateAfter),
            Shards = o.Shards,
            MaximumFrameBytes = frame,
            StableAfter = Duration(o.SplitBrain.StableAfter),
            SplitBrainLease = string.IsNullOrWhiteSpace(o.SplitBrain.LeaseConnectionString) ? null : o.SplitBrain.LeaseConnectionString,
            TelemetryExporter = o.Telemetry.Exporter!.ToLowerInvariant(),
            OtlpEndpoint = o.Telemetry.OtlpEndpoint!,
            Sources = sources,
            FailedRetention = Duration(o.Http.FailedRetention),
            Viewer = viewer,
            Tls = new TlsSettings(NodeConfiguration.Switch(o.Tls.Enabled) ?? false, o.Tls.Certificate ?? "", o.Tls.Password ?? "",
                o.Tls.TrustedThumbprints),
            Hocon = hocon,
        };
    }
}

/// <summary>Checks <see cref="ServingNodeOptions"/> at start; failures name the key.</summary>
public sealed partial class ServingNodeOptionsValidator : IValidateOptions<ServingNodeOptions>
{
    public ValidateOptionsResult Validate(string? name, ServingNodeOptions o)
    {
        var c = new SettingChecks(ServingNodeOptions.Section);
        if (!Name().IsMatch(c.Required("name", o.Name)))
            c.Fail("name", $"'{o.Name}' must be 1-40 characters of a-z, 0-9 and '-', starting with a letter or digit");
        c.Required("store", o.Store);
        var hostname = c.Required("hostname", o.Hostname);
        c.Required("http:hostname", o.Http.Hostname);
        c.Range("port", o.Port, 0, 65535);
        c.Range("http:port", o.Http.Port, 0, 65535);
        c.Range("http:maxBodyBytes", o.Http.MaxBodyBytes, 256, 16 << 20);
        c.Range("http:maxInFlight", o.Http.MaxInFlight, 1, 100_000);
        c.Duration("http:failedRetention", o.Http.FailedRetention);
        c.OneOf("precision", o.Precision, "fp32", "bf16");
        c.OneOf("telemetry:exporter", o.Telemetry.Exporter, "none", "console", "otlp");
        c.Required("telemetry:otlpEndpoint", o.Telemetry.OtlpEndpoint);
        c.Switch("viewer:enabled", o.Viewer.Enabled);
        c.Required("viewer:hostname", o.Viewer.Hostname);
        c.Range("viewer:port", o.Viewer.Port, 0, 65535);
        c.Duration("viewer:interval", o.Viewer.Interval);
        c.Duration("viewer:galleryInterval", o.Viewer.GalleryInterval);
        foreach (var text in o.Viewer.Islands)
            if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.Query.Length > 0
                || uri.Fragment.Length > 0)
                c.Fail("viewer:islands", $"'{text}' must be an island node's HTTP endpoint such as http://expert-0:8080");
        if (o.Viewer.Hostname == o.Http.Hostname && o.Viewer.Port == o.Http.Port && o.Viewer.Port != 0)
            c.Fail("viewer:port", $"{o.Viewer.Port} is the API's port (http:port): the viewer needs its own listener");
        c.Keys("apiKeys", o.ApiKeys);
        c.File("apiKeysFile", o.ApiKeysFile, "file");
        c.Switch("allowAnonymous", o.AllowAnonymous);
        c.Range("batching:maxRows", o.Batching.MaxRows, 1, 4096);
        c.Duration("batching:maxWait", o.Batching.MaxWait);
        foreach (var (key, value) in new[] { ("expertDeadline", o.ExpertDeadline), ("expertCooldown", o.ExpertCooldown),
            ("requestTimeout", o.RequestTimeout), ("progressTimeout", o.ProgressTimeout), ("rescanInterval", o.RescanInterval),
            ("resultsRetention", o.ResultsRetention), ("passivateAfter", o.PassivateAfter), ("splitBrain:stableAfter", o.SplitBrain.StableAfter),
            ("faults:slowExpertDelay", o.Faults.SlowExpertDelay), ("sources:interval", o.Sources.Interval) })
            c.Duration(key, value);
        c.Range("stragglerFactor", o.StragglerFactor, 0, 1000);
        c.Range("faults:slowExpert", o.Faults.SlowExpert, -1, 1023);
        c.Range("shards", o.Shards, 1, 10_000);
        var tls = RemoteTls.Check(c, o.Tls);
        var prefix = $"{(tls.Enabled ? "akka.ssl.tcp" : "akka.tcp")}://serving-{o.Name}@";
        foreach (var seed in o.SeedNodes.Where(s => !s.StartsWith(prefix, StringComparison.Ordinal)))
            c.Fail("seedNodes", $"'{seed}' must start with {prefix} (this serving cluster's actor system{(tls.Enabled ? ", over TLS" : "")})");
        ClusterFormation.Check(c, o.Bootstrap, o.SeedNodes, ClusterFormation.SelfContact(o.PublicHostname, hostname, o.Http.Port), o.Http.Port);
        CheckLease(c, o.SplitBrain.LeaseConnectionString);
        foreach (var text in o.Sources.Endpoints)
            if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.Query.Length > 0
                || uri.Fragment.Length > 0)
                c.Fail("sources:endpoints", $"'{text}' must be an island node's HTTP endpoint such as http://expert-0:8080");
        if (!string.IsNullOrEmpty(o.Sources.Key)) c.Keys("sources:key", [o.Sources.Key]);
        c.File("sources:keyFile", o.Sources.KeyFile, "file");
        if (NodeConfiguration.Bytes(o.Sources.MaxFileSize) is not > 0)
            c.Fail("sources:maxFileSize", $"'{o.Sources.MaxFileSize}' is not a positive size such as 4GiB");
        c.File("akkaConfig", o.AkkaConfig, "HOCON file");
        return c.Result;
    }

    private static void CheckLease(SettingChecks c, string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return;
        try
        {
            var builder = new Npgsql.NpgsqlConnectionStringBuilder(text);
            if (string.IsNullOrWhiteSpace(builder.Host)) throw new ArgumentException("it names no Host");
            if (string.IsNullOrWhiteSpace(builder.Database)) throw new ArgumentException("it names no Database");
        }
        catch (ArgumentException e)
        {
            // The message never repeats the value: it holds the database password.
            c.Fail("splitBrain:leaseConnectionString",
                $"is not a PostgreSQL connection string ({e.Message}), e.g. Host=10.0.0.9;Username=islands;Database=serving");
        }
    }

    [GeneratedRegex("^[a-z0-9][a-z0-9-]{0,39}$")]
    private static partial Regex Name();
}
