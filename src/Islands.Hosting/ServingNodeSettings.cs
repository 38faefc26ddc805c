using Islands.Actors.Serving;
using Islands.Hosting.Configuration;

namespace Islands.Hosting;

/// <summary>Islands whose publications this node fetches over HTTP into its store (none: it reads the store the islands write).</summary>
/// <param name="Endpoints">Island nodes' HTTP endpoints.</param>
/// <param name="Key">Bearer key the islands accept (islands:publication:keys).</param>
public sealed record PublicationSources(IReadOnlyList<Uri> Endpoints, string Key, TimeSpan Interval, long MaxFileBytes)
{
    public bool Enabled => Endpoints.Count > 0;
}

/// <summary>The live viewer of a serving node (null when it is off).</summary>
/// <param name="Islands">Island nodes' HTTP endpoints whose status it shows.</param>
public sealed record ViewerSettings(string Hostname, int Port, IReadOnlyList<Uri> Islands, TimeSpan Interval, TimeSpan GalleryInterval);

/// <summary>One serving node's settings: its validated <see cref="ServingNodeOptions"/> resolved by <see cref="ServingNodeConfig"/>.</summary>
public sealed record ServingNodeSettings : NodeSettings
{
    public const string Role = "serving";

    public required ServingNodeOptions Options { get; init; }
    public required string Name { get; init; }
    public required long MaxBodyBytes { get; init; }
    public required int MaxInFlight { get; init; }
    /// <summary>Accepted bearer tokens; empty only with AllowAnonymous.</summary>
    public required IReadOnlyList<string> ApiKeys { get; init; }
    public required bool AllowAnonymous { get; init; }
    public required ServingSettings Serving { get; init; }
    public required TimeSpan PassivateAfter { get; init; }
    public required int Shards { get; init; }
    public required long MaximumFrameBytes { get; init; }
    /// <summary>A PostgreSQL connection string for the split-brain lease, or null (keep-majority).</summary>
    public required string? SplitBrainLease { get; init; }
    public required PublicationSources Sources { get; init; }
    /// <summary>How long GET reports an asynchronous generation that failed before it is forgotten.</summary>
    public required TimeSpan FailedRetention { get; init; }
    public required ViewerSettings? Viewer { get; init; }

    public override string SystemName => "serving-" + Name;
}
