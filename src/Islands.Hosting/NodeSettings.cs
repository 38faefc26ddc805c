using Akka.Configuration;

namespace Islands.Hosting;

public sealed record TlsSettings(bool Enabled, string Certificate, string Password, IReadOnlyList<string> TrustedThumbprints);

/// <summary>What every node has, island or serving: its remoting and HTTP endpoints, cluster formation, TLS, telemetry.</summary>
public abstract record NodeSettings
{
    public required string Hostname { get; init; }
    public required string? PublicHostname { get; init; }
    public required int Port { get; init; }
    public required ClusterFormation Formation { get; init; }
    public required string HttpHostname { get; init; }
    public required int HttpPort { get; init; }
    /// <summary>How long the split-brain resolver waits for a stable view before it decides.</summary>
    public required TimeSpan StableAfter { get; init; }
    /// <summary>Remoting TLS (<see cref="RemoteTls"/>).</summary>
    public required TlsSettings Tls { get; init; }
    /// <summary>none, console or otlp.</summary>
    public required string TelemetryExporter { get; init; }
    public required string OtlpEndpoint { get; init; }
    /// <summary>The actor system's akka.* and dispatchers: the node kind's hocon/*.conf under its akkaConfig file.</summary>
    public required Config Hocon { get; init; }

    /// <summary>The actor system's name, which every node of one cluster shares.</summary>
    public abstract string SystemName { get; }
    public string Protocol => Tls.Enabled ? "akka.ssl.tcp" : "akka.tcp";
    public IReadOnlyList<string> SeedNodes => Formation.SeedNodes;
}
