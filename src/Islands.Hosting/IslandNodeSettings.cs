using Islands.Actors;
using Islands.Diffusion.Training;
using Islands.Hosting.Configuration;

namespace Islands.Hosting;

/// <summary>One island node's settings: its validated <see cref="IslandNodeOptions"/> resolved by <see cref="IslandNodeConfig"/>.</summary>
public sealed record IslandNodeSettings : NodeSettings
{
    public const string Role = "trainer";

    public required IslandNodeOptions Options { get; init; }
    public required string Island { get; init; }
    public required TrainingJob Job { get; init; }
    public required string Store { get; init; }
    /// <summary>sqlite or postgresql.</summary>
    public required string JournalProvider { get; init; }
    public required string JournalConnectionString { get; init; }
    public required int ChunkSteps { get; init; }
    public required TimeSpan MinBackoff { get; init; }
    public required TimeSpan MaxBackoff { get; init; }
    /// <summary>Receptionists of serving clusters to announce publications to (may be empty).</summary>
    public required IReadOnlyList<string> ServingContacts { get; init; }
    public required int TorchThreads { get; init; }
    /// <summary>How long the island's lease outlives its holder's last renewal (a killed trainer's lease expires after it).</summary>
    public required TimeSpan LeaseTimeToLive { get; init; }
    /// <summary>Bearer keys that may fetch the island's published checkpoint over HTTP (none: nobody may).</summary>
    public required IReadOnlyList<string> PublicationKeys { get; init; }

    public string RunDirectory => Path.GetFullPath(Path.Combine(Store, Island));
    public override string SystemName => "islands-" + Island;

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
