using Akka.Cluster.Hosting;
using Akka.Configuration;
using Akka.Hosting;
using Akka.Remote.Hosting;
using Islands.Actors;

namespace Islands.Hosting;

/// <summary>What an island node and a serving node configure the same way: remoting, clustering, split brain, serialization.</summary>
public sealed record NodeWiringOptions
{
    /// <summary>The node kind's HOCON (dispatchers, frame size, ...): the fallback under the typed options.</summary>
    public required Config Hocon { get; init; }
    public required string Role { get; init; }
    public required string Hostname { get; init; }
    public required string? PublicHostname { get; init; }
    public required int Port { get; init; }
    public required TlsSettings Tls { get; init; }
    public required ClusterFormation Formation { get; init; }
    public required TimeSpan StableAfter { get; init; }
    /// <summary>A PostgreSQL connection string for lease-majority, or null for keep-majority.</summary>
    public required string? SplitBrainLease { get; init; }
    public required string SplitBrainLeaseName { get; init; }
    public IReadOnlyList<string> SeedNodes => Formation.SeedNodes;
}

/// <summary>The Akka.Hosting wiring every Islands node shares; each host adds only its own actors and persistence.</summary>
public static class NodeWiring
{
    public static AkkaConfigurationBuilder WithIslandsNode(this AkkaConfigurationBuilder akka, NodeWiringOptions node)
    {
        akka.AddHocon(node.Hocon, HoconAddMode.Append);
        var stableAfter = $"akka.cluster.split-brain-resolver.stable-after = {(int)node.StableAfter.TotalMilliseconds}ms";
        akka.AddHocon(ConfigurationFactory.ParseString(stableAfter), HoconAddMode.Prepend);
        akka.ConfigureLoggers(l => l.AddLoggerFactory());
        akka.WithNodeHealthChecks();
        akka.WithRemoting(RemoteTls.Apply(new RemoteOptions { HostName = node.Hostname, PublicHostName = node.PublicHostname, Port = node.Port },
            node.Tls));
        akka.WithClustering(new ClusterOptions
        {
            Roles = [node.Role],
            SeedNodes = [.. node.SeedNodes],
            SplitBrainResolver = SplitBrainStrategy.Apply(akka, node.SplitBrainLease, node.SplitBrainLeaseName, node.StableAfter),
        });
        node.Formation.Apply(akka);
        akka.WithCustomSerializer("islands", [typeof(IIslandsMessage)], system => new IslandsSerializer(system));
        akka.WithStrictSerialization(true);
        return akka;
    }
}
