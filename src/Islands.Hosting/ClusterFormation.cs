using System.Globalization;
using Akka.Actor;
using Akka.Cluster;
using Akka.Hosting;
using Islands.Hosting.Configuration;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Islands.Hosting;

/// <summary>What GET /cluster/seed-nodes answers: this node's address and the reachable members of its cluster (none before it has joined).</summary>
public sealed record SeedNodesAnswer(string Self, IReadOnlyList<string> Members);

/// <summary>
/// How a node finds its cluster. With contact points (the HTTP endpoints host:port of every node of the cluster, this
/// one included) a <see cref="ClusterBootstrapService"/> asks them over HTTP whether a cluster exists and joins it; a new
/// cluster forms only when enough contact points answer and none of them is in a cluster, and then only by the lowest
/// of them, so a restarted node never forms a second cluster beside a running one. (Akka.Management's Cluster Bootstrap
/// does the same, but its HTTP server needs Ceen.Httpd 0.9.9, which the package feed here does not serve: 0.9.10 is
/// not binary compatible and the endpoint fails to start.) Static seed nodes are still accepted for tests that never
/// restart a node alone: the first seed joins itself when it reaches no other seed within seed-node-timeout, which is
/// how a restarted first seed forms a second cluster. With neither, a one-node cluster joins itself.
/// </summary>
/// <param name="RequiredContactPoints">Contact points that must answer before a new cluster forms (a majority by default).</param>
/// <param name="StableMargin">How long the answers must stay the same before the lowest node forms a new cluster.</param>
public sealed record ClusterFormation(IReadOnlyList<string> SeedNodes, IReadOnlyList<string> ContactPoints, string SelfContactPoint,
    int RequiredContactPoints, TimeSpan StableMargin)
{
    public const string Route = "/cluster/seed-nodes";

    public bool UsesBootstrap => ContactPoints.Count > 0;

    /// <summary>Checks <c>{section}:bootstrap</c>; the node's own contact point is <paramref name="self"/>.</summary>
    public static void Check(SettingChecks checks, Configuration.BootstrapOptions bootstrap, IReadOnlyList<string> seeds, string self, int httpPort)
    {
        foreach (var contact in bootstrap.ContactPoints.Where(c => !IsHostPort(c)))
            checks.Fail("bootstrap:contactPoints", $"'{contact}' must be host:port, the HTTP endpoint of one node (e.g. 10.0.0.5:8081)");
        checks.Range("bootstrap:requiredContactPoints", bootstrap.RequiredContactPoints, 0, 64);
        checks.Duration("bootstrap:stableMargin", bootstrap.StableMargin);
        var contacts = bootstrap.ContactPoints;
        if (contacts.Length == 0) return;
        if (seeds.Count > 0) checks.Fail("bootstrap:contactPoints", $"give contact points or {checks.Key("seedNodes")}, not both");
        if (httpPort == 0)
            checks.Fail("http:port", "a fixed HTTP port is required with contact points (the other nodes ask it for the cluster)");
        else if (!contacts.Contains(self, StringComparer.OrdinalIgnoreCase))
            checks.Fail("bootstrap:contactPoints", $"must list this node's own endpoint {self} (its public hostname, or hostname, and " +
                $"{checks.Key("http:port")})");
        if (bootstrap.RequiredContactPoints > contacts.Length)
            checks.Fail("bootstrap:requiredContactPoints", $"{bootstrap.RequiredContactPoints} is more than the {contacts.Length} contact points");
    }

    /// <summary>The formation of checked options.</summary>
    public static ClusterFormation From(Configuration.BootstrapOptions bootstrap, IReadOnlyList<string> seeds, string self)
    {
        var required = bootstrap.RequiredContactPoints;
        return new ClusterFormation([.. seeds], [.. bootstrap.ContactPoints], self, required == 0 ? bootstrap.ContactPoints.Length / 2 + 1 : required,
            Configuration.NodeConfiguration.Duration(bootstrap.StableMargin) ?? TimeSpan.FromSeconds(3));
    }

    /// <summary>This node's contact point: its public hostname (or hostname) and HTTP port.</summary>
    public static string SelfContact(string? publicHostname, string hostname, int httpPort) =>
        $"{(string.IsNullOrWhiteSpace(publicHostname) ? hostname : publicHostname)}:{httpPort.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>The bootstrap service, when contact points are given; call after AddAkka, so that it starts once the actor system runs.</summary>
    public void AddServices(IServiceCollection services)
    {
        if (!UsesBootstrap) return;
        services.AddSingleton(this);
        services.AddHostedService<ClusterBootstrapService>();
    }

    /// <summary>The self-join of a one-node cluster (neither contact points nor seed nodes); static seed nodes need nothing here.</summary>
    public void Apply(AkkaConfigurationBuilder akka)
    {
        // Remoting may have picked a free port, so the node joins the address it got.
        if (!UsesBootstrap && SeedNodes.Count == 0) akka.AddStartup((system, _) => Cluster.Get(system).Join(Cluster.Get(system).SelfAddress));
    }

    /// <summary>GET /cluster/seed-nodes, open like the health endpoints: the addresses are what the other nodes join.</summary>
    public static RouteHandlerBuilder MapSeedNodes(IEndpointRouteBuilder app)
        => app.MapGet(Route, (ActorSystem system) => Results.Json(Answer(Cluster.Get(system))));

    public static SeedNodesAnswer Answer(Cluster cluster)
    {
        // A node that is leaving, down or not yet admitted attracts nobody.
        if (cluster.SelfMember.Status is not (MemberStatus.Up or MemberStatus.WeaklyUp))
            return new SeedNodesAnswer(cluster.SelfAddress.ToString(), []);
        var state = cluster.State;
        var members = state.Members.Where(m => m.Status is MemberStatus.Up or MemberStatus.WeaklyUp && !state.Unreachable.Contains(m))
            .Select(m => m.Address.ToString()).ToList();
        return new SeedNodesAnswer(cluster.SelfAddress.ToString(), members);
    }

    private static bool IsHostPort(string text)
    {
        var colon = text.LastIndexOf(':');
        return colon > 0 && !text[..colon].Contains('/')
            && int.TryParse(text[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is > 0 and < 65536;
    }
}
