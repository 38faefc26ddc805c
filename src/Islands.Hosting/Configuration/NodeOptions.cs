using Microsoft.Extensions.Configuration;

namespace Islands.Hosting.Configuration;

// Option classes bound from Microsoft.Extensions.Configuration; their defaults live in config/*.json beside the
// executable, where every setting is documented. Durations and sizes are strings (5s, 4MiB) checked by the validators.

/// <summary>Remoting over TLS (<see cref="RemoteTls"/>).</summary>
public sealed class TlsOptions
{
    /// <summary>on/off (or true/false).</summary>
    public string? Enabled { get; set; }
    public string? Certificate { get; set; }
    public string? Password { get; set; }
    public string[] TrustedThumbprints { get; set; } = [];
}

/// <summary>How a node finds its cluster (<see cref="ClusterFormation"/>).</summary>
public sealed class BootstrapOptions
{
    public string[] ContactPoints { get; set; } = [];
    public int RequiredContactPoints { get; set; }
    public string? StableMargin { get; set; }
}

public sealed class TelemetryOptions
{
    /// <summary>none, console or otlp.</summary>
    public string? Exporter { get; set; }
    public string? OtlpEndpoint { get; set; }
}

/// <summary>The settings of an island node: section <c>islands</c>.</summary>
public sealed class IslandNodeOptions
{
    public const string Section = "islands";

    public string? Island { get; set; }
    /// <summary>A registered method's job: expert:K, monolith, router.</summary>
    public string? Job { get; set; }
    public string? Store { get; set; }
    public string? Hostname { get; set; }
    public string? PublicHostname { get; set; }
    public int Port { get; set; }
    public BootstrapOptions Bootstrap { get; set; } = new();
    public string[] SeedNodes { get; set; } = [];
    public IslandHttpOptions Http { get; set; } = new();
    public JournalOptions Journal { get; set; } = new();
    public int TorchThreads { get; set; }
    public int ChunkSteps { get; set; }
    public BackoffOptions Backoff { get; set; } = new();
    public LeaseOptions Lease { get; set; } = new();
    public SplitBrainOptions SplitBrain { get; set; } = new();
    public TlsOptions Tls { get; set; } = new();
    public string[] ServingContacts { get; set; } = [];
    public PublicationOptions Publication { get; set; } = new();
    public TelemetryOptions Telemetry { get; set; } = new();
    /// <summary>A HOCON file of akka.* settings over hocon/island.conf.</summary>
    public string? AkkaConfig { get; set; }
    /// <summary>The job's training settings, read as its registered method's typed config.</summary>
    public IConfigurationSection? Training { get; set; }
    public IslandTestOptions Test { get; set; } = new();

    public sealed class IslandHttpOptions
    {
        public string? Hostname { get; set; }
        public int Port { get; set; }
    }

    public sealed class JournalOptions
    {
        /// <summary>sqlite or postgresql.</summary>
        public string? Provider { get; set; }
        public string? ConnectionString { get; set; }
    }

    public sealed class BackoffOptions
    {
        public string? Min { get; set; }
        public string? Max { get; set; }
    }

    public sealed class LeaseOptions
    {
        public string? TimeToLive { get; set; }
    }

    public sealed class SplitBrainOptions
    {
        public string? StableAfter { get; set; }
    }

    public sealed class PublicationOptions
    {
        public string[] Keys { get; set; } = [];
        public string? KeysFile { get; set; }
    }

    public sealed class IslandTestOptions
    {
        /// <summary>Fault injection: the job's loss is NaN from this step on.</summary>
        public string? FaultNanFromStep { get; set; }
    }
}

/// <summary>The settings of a serving node: section <c>islands:serving</c>.</summary>
public sealed class ServingNodeOptions
{
    public const string Section = "islands:serving";

    public string? Name { get; set; }
    public string? Store { get; set; }
    public ServingSourcesOptions Sources { get; set; } = new();
    public string? Results { get; set; }
    public string? ResultsRetention { get; set; }
    public string? Hostname { get; set; }
    public string? PublicHostname { get; set; }
    public int Port { get; set; }
    public BootstrapOptions Bootstrap { get; set; } = new();
    public string[] SeedNodes { get; set; } = [];
    public TlsOptions Tls { get; set; } = new();
    public ServingHttpOptions Http { get; set; } = new();
    public ViewerOptions Viewer { get; set; } = new();
    public string[] ApiKeys { get; set; } = [];
    public string? ApiKeysFile { get; set; }
    public string? AllowAnonymous { get; set; }
    public BatchingOptions Batching { get; set; } = new();
    public string? ExpertDeadline { get; set; }
    public string? ExpertCooldown { get; set; }
    public double StragglerFactor { get; set; }
    public string? RequestTimeout { get; set; }
    public string? ProgressTimeout { get; set; }
    public string? PassivateAfter { get; set; }
    public string? RescanInterval { get; set; }
    /// <summary>fp32 or bf16.</summary>
    public string? Precision { get; set; }
    public int Shards { get; set; }
    public ServingSplitBrainOptions SplitBrain { get; set; } = new();
    public FaultOptions Faults { get; set; } = new();
    public TelemetryOptions Telemetry { get; set; } = new();
    /// <summary>A HOCON file of akka.* settings over hocon/serving.conf.</summary>
    public string? AkkaConfig { get; set; }

    public sealed class ServingSourcesOptions
    {
        public string[] Endpoints { get; set; } = [];
        public string? Key { get; set; }
        public string? KeyFile { get; set; }
        public string? Interval { get; set; }
        public string? MaxFileSize { get; set; }
    }

    public sealed class ServingHttpOptions
    {
        public string? Hostname { get; set; }
        public int Port { get; set; }
        public long MaxBodyBytes { get; set; }
        public int MaxInFlight { get; set; }
        public string? FailedRetention { get; set; }
    }

    public sealed class ViewerOptions
    {
        public string? Enabled { get; set; }
        public string? Hostname { get; set; }
        public int Port { get; set; }
        public string[] Islands { get; set; } = [];
        public string? Interval { get; set; }
        public string? GalleryInterval { get; set; }
    }

    public sealed class BatchingOptions
    {
        public int MaxRows { get; set; }
        public string? MaxWait { get; set; }
    }

    public sealed class ServingSplitBrainOptions
    {
        public string? StableAfter { get; set; }
        public string? LeaseConnectionString { get; set; }
    }

    public sealed class FaultOptions
    {
        public int SlowExpert { get; set; }
        public string? SlowExpertDelay { get; set; }
    }
}
