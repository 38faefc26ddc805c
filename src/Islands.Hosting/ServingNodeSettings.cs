using Akka.Configuration;
using Islands.Actors.Serving;

namespace Islands.Hosting;

/// <summary>Islands whose publications this node fetches over HTTP into its store (none: it reads the store the islands write).</summary>
/// <param name="Endpoints">Island nodes' HTTP endpoints.</param>
/// <param name="Key">Bearer key the islands accept (islands.publication.keys).</param>
public sealed record PublicationSources(IReadOnlyList<Uri> Endpoints, string Key, TimeSpan Interval, long MaxFileBytes)
{
    public bool Enabled => Endpoints.Count > 0;
}

/// <summary>One serving node's settings, read from the merged configuration by <see cref="ServingNodeConfig"/>.</summary>
/// <param name="ApiKeys">Accepted bearer tokens; empty only with AllowAnonymous.</param>
/// <param name="Tls">Remoting TLS, as an island's (<see cref="RemoteTls"/>).</param>
/// <param name="FailedRetention">How long GET reports an asynchronous generation that failed before it is forgotten.</param>
/// <param name="Hocon">The merged configuration; its akka.* and dispatcher sections go to the actor system.</param>
public sealed record ServingNodeSettings(
    string Name, string Hostname, string? PublicHostname, int Port, ClusterFormation Formation, string HttpHostname, int HttpPort,
    long MaxBodyBytes, int MaxInFlight, IReadOnlyList<string> ApiKeys, bool AllowAnonymous, ServingSettings Serving, TimeSpan PassivateAfter,
    int Shards, long MaximumFrameBytes, TimeSpan StableAfter, string? SplitBrainLease, string TelemetryExporter, string OtlpEndpoint,
    PublicationSources Sources, TimeSpan FailedRetention, TlsSettings Tls, Config Hocon)
{
    public const string Role = "serving";
    public string SystemName => "serving-" + Name;
    public string Protocol => Tls.Enabled ? "akka.ssl.tcp" : "akka.tcp";
    public IReadOnlyList<string> SeedNodes => Formation.SeedNodes;
}
