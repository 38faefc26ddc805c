using System.Net.Http.Json;
using Akka.Actor;
using Akka.Cluster;
using Islands.Diffusion.IO;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Islands.Hosting;

/// <summary>
/// Joins this node to its cluster through its contact points (<see cref="ClusterFormation"/>): every second it asks each
/// contact point's GET /cluster/seed-nodes. If any of them is in a cluster, it joins that cluster's members (never
/// itself). If none is, it waits until enough of them have answered, the answers have not changed for the stable
/// margin, and this node is the lowest contact point that answered; only then does it form a new cluster.
/// </summary>
internal sealed class ClusterBootstrapService(ActorSystem system, ClusterFormation formation, ILogger<ClusterBootstrapService> log)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stop)
    {
        var cluster = Cluster.Get(system);
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var self = cluster.SelfAddress.ToString();
        string? lastObservation = null;
        var stableSince = DateTime.UtcNow;
        while (!stop.IsCancellationRequested && cluster.SelfMember.Status == MemberStatus.Removed)
        {
            var answers = await Task.WhenAll(formation.ContactPoints.Select(c => AskAsync(http, c, stop)));
            var answered = formation.ContactPoints.Zip(answers, (contact, answer) => (Contact: contact, Answer: answer))
                .Where(p => p.Answer is not null).Select(p => (p.Contact, Answer: p.Answer!)).ToList();
            var seeds = answered.SelectMany(a => a.Answer.Members).Where(m => m != self).Distinct().Select(Address.Parse).ToList();
            if (seeds.Count > 0)
            {
                log.LogInformation("cluster bootstrap: joining the running cluster through {Seeds}", string.Join(", ", seeds));
                // Not this node's own address: a restarted node whose old incarnation is still listed must not seed itself.
                cluster.JoinSeedNodes(seeds);
                return;
            }
            var observation = string.Join(",", answered.Select(a => a.Contact).Order(StringComparer.Ordinal));
            if (observation != lastObservation)
            {
                lastObservation = observation;
                stableSince = DateTime.UtcNow;
            }
            var lowest = answered.Select(a => a.Contact).Order(ContactPointOrder.Instance).FirstOrDefault();
            if (answered.Count >= formation.RequiredContactPoints && DateTime.UtcNow - stableSince >= formation.StableMargin
                && string.Equals(lowest, formation.SelfContactPoint, StringComparison.OrdinalIgnoreCase))
            {
                log.LogInformation("cluster bootstrap: {Answered} of {Total} contact points answered and none is in a cluster; {Self} is the " +
                    "lowest and forms a new cluster", answered.Count, formation.ContactPoints.Count, formation.SelfContactPoint);
                cluster.Join(cluster.SelfAddress);
                return;
            }
            await Task.Delay(TimeSpan.FromSeconds(1), stop).ContinueWith(_ => { }, TaskScheduler.Default);
        }
    }

    private static async Task<SeedNodesAnswer?> AskAsync(HttpClient http, string contact, CancellationToken stop)
    {
        try
        {
            return await http.GetFromJsonAsync<SeedNodesAnswer>($"http://{contact}{ClusterFormation.Route}", Json.Options, stop);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or System.Text.Json.JsonException
            && !stop.IsCancellationRequested)
        {
            return null;
        }
    }

    /// <summary>Orders host:port contact points by host, then by port as a number (so 127.0.0.1:7001 comes before 127.0.0.1:10001).</summary>
    private sealed class ContactPointOrder : IComparer<string>
    {
        public static readonly ContactPointOrder Instance = new();

        public int Compare(string? a, string? b)
        {
            var (hostA, portA) = Split(a!);
            var (hostB, portB) = Split(b!);
            var byHost = string.Compare(hostA, hostB, StringComparison.OrdinalIgnoreCase);
            return byHost != 0 ? byHost : portA.CompareTo(portB);
        }

        private static (string Host, int Port) Split(string contact)
        {
            var colon = contact.LastIndexOf(':');
            return (contact[..colon], int.Parse(contact[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture));
        }
    }
}
