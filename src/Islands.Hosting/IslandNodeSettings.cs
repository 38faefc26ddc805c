using Akka.Configuration;
using Islands.Actors;
using Islands.Diffusion.Training;

namespace Islands.Hosting;

public sealed record TlsSettings(bool Enabled, string Certificate, string Password, IReadOnlyList<string> TrustedThumbprints);

/// <summary>One island node's settings, read from the merged configuration by <see cref="IslandNodeConfig"/>.</summary>
/// <param name="ServingContacts">Receptionists of serving clusters to announce publications to (may be empty).</param>
/// <param name="LeaseTimeToLive">How long the island's lease outlives its holder's last renewal (a killed trainer's lease expires after it).</param>
/// <param name="PublicationKeys">Bearer keys that may fetch the island's published checkpoint over HTTP (none: nobody may).</param>
/// <param name="Hocon">The merged configuration; its akka.* and islands.training-dispatcher sections go to the actor system.</param>
public sealed record IslandNodeSettings(
    string Island, TrainingJob Job, string Store, string Hostname, string? PublicHostname, int Port, ClusterFormation Formation,
    string HttpHostname, int HttpPort, string JournalProvider, string JournalConnectionString, int ChunkSteps,
    TimeSpan MinBackoff, TimeSpan MaxBackoff, TimeSpan StableAfter, TlsSettings Tls, string TelemetryExporter, string OtlpEndpoint,
    IReadOnlyList<string> ServingContacts, int TorchThreads, TimeSpan LeaseTimeToLive, IReadOnlyList<string> PublicationKeys, Config Hocon)
{
    public const string Role = "trainer";
    public string RunDirectory => Path.GetFullPath(Path.Combine(Store, Island));
    public string SystemName => "islands-" + Island;
    public string Protocol => Tls.Enabled ? "akka.ssl.tcp" : "akka.tcp";
    public IReadOnlyList<string> SeedNodes => Formation.SeedNodes;

    public IslandJobSettings JobSettings => new(Island, Job, RunDirectory, ChunkSteps, MinBackoff, MaxBackoff, JournalDescription, TorchThreads,
        FaultInjection.Parse(Hocon.GetString("islands.test.fault-nan-from-step", ""), Job.Name));

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
