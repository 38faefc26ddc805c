using Akka.Cluster.Hosting;
using Akka.Configuration;
using Akka.Hosting;
using Akka.Remote.Hosting;
using Islands.Actors;

namespace Islands.Hosting;

/// <summary>What an island node and a serving node configure the same way: remoting, clustering, split brain, serialization.</summary>
/// <param name="SplitBrainLease">A PostgreSQL connection string for lease-majority, or null for keep-majority.</param>
public sealed record NodeWiringOptions(NodeSettings Node, string Role, string? SplitBrainLease, string SplitBrainLeaseName);

/// <summary>The Akka.Hosting wiring every Islands node shares; each host adds only its own actors and persistence.</summary>
public static class NodeWiring
{
    public static AkkaConfigurationBuilder WithIslandsNode(this AkkaConfigurationBuilder akka, NodeWiringOptions wiring)
    {
        var node = wiring.Node;
        akka.AddHocon(node.Hocon, HoconAddMode.Append);
        var stableAfter = $"akka.cluster.split-brain-resolver.stable-after = {(int)node.StableAfter.TotalMilliseconds}ms";
        akka.AddHocon(ConfigurationFactory.ParseString(stableAfter), HoconAddMode.Prepend);
        akka.ConfigureLoggers(l => l.AddLoggerFactory());
        akka.WithNodeHealthChecks();
        akka.WithRemoting(RemoteTls.Apply(new RemoteOptions { HostName = node.Hostname, PublicHostName = node.PublicHostname, Port = node.Port },
            node.Tls));
        akka.WithClustering(new ClusterOptions
        {
            Roles = [wiring.Role],
            SeedNodes = [.. node.SeedNodes],
            SplitBrainResolver = SplitBrainStrategy.Apply(akka, wiring.SplitBrainLease, wiring.SplitBrainLeaseName, node.StableAfter),
        });
        node.Formation.Apply(akka);
        akka.WithCustomSerializer("islands", [typeof(IIslandsMessage)], system => new IslandsSerializer(system));
        akka.WithStrictSerialization(true);
        return akka;
    }
}
