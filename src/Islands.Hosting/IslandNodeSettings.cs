using Akka.Configuration;
using Islands.Actors;
using Islands.Diffusion.Training;
using Islands.Hosting.Configuration;

namespace Islands.Hosting;

public sealed record TlsSettings(bool Enabled, string Certificate, string Password, IReadOnlyList<string> TrustedThumbprints);

/// <summary>One island node's settings: its validated <see cref="IslandNodeOptions"/> resolved by <see cref="IslandNodeConfig"/>.</summary>
public sealed record IslandNodeSettings
{
    public const string Role = "trainer";

    public required IslandNodeOptions Options { get; init; }
    public required string Island { get; init; }
    public required TrainingJob Job { get; init; }
    public required string Store { get; init; }
    public required string Hostname { get; init; }
    public required string? PublicHostname { get; init; }
    public required int Port { get; init; }
    public required ClusterFormation Formation { get; init; }
    public required string HttpHostname { get; init; }
    public required int HttpPort { get; init; }
    /// <summary>sqlite or postgresql.</summary>
    public required string JournalProvider { get; init; }
    public required string JournalConnectionString { get; init; }
    public required int ChunkSteps { get; init; }
    public required TimeSpan MinBackoff { get; init; }
    public required TimeSpan MaxBackoff { get; init; }
    public required TimeSpan StableAfter { get; init; }
    public required TlsSettings Tls { get; init; }
    public required string TelemetryExporter { get; init; }
    public required string OtlpEndpoint { get; init; }
    /// <summary>Receptionists of serving clusters to announce publications to (may be empty).</summary>
    public required IReadOnlyList<string> ServingContacts { get; init; }
    public required int TorchThreads { get; init; }
    /// <summary>How long the island's lease outlives its holder's last renewal (a killed trainer's lease expires after it).</summary>
    public required TimeSpan LeaseTimeToLive { get; init; }
    /// <summary>Bearer keys that may fetch the island's published checkpoint over HTTP (none: nobody may).</summary>
    public required IReadOnlyList<string> PublicationKeys { get; init; }
    /// <summary>The actor system's akka.* (and its training dispatcher): hocon/island.conf under islands:akkaConfig.</summary>
    public required Config Hocon { get; init; }

    public string RunDirectory => Path.GetFullPath(Path.Combine(Store, Island));
    public string SystemName => "islands-" + Island;
    public string Protocol => Tls.Enabled ? "akka.ssl.tcp" : "akka.tcp";
    public IReadOnlyList<string> SeedNodes => Formation.SeedNodes;

    public IslandJobSettings JobSettings => new(Island, Job, RunDirectory, ChunkSteps, MinBackoff, MaxBackoff, JournalDescription, TorchThreads,
        FaultInjection.Parse(Options.Test.FaultNanFromStep ?? "", Job.Name));

    /// <summary>The journal for logs and status: provider and location only, so a password never leaves the process.</summary>
    public string JournalDescription
    {
        get
        {
            if (JournalProvider == "sqlite")
                return $"sqlite journal {new Microsoft.Data.Sqlite.SqliteConnectionStringBuilder(JournalConnectionString).DataSource}";
            var pg = new Npgsql.NpgsqlConnectionStringBuilder(JournalConnectionString);
            return $"postgresql journal {pg.Host}:{pg.Port}/{pg.Database}";
        }
    }
}
