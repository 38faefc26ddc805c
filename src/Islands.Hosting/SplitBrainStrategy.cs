using Akka.Cluster.Hosting.SBR;
using Akka.Hosting;

namespace Islands.Hosting;

/// <summary>
/// The split-brain resolver of an island or of serving. With a PostgreSQL database to hold a lease it is lease-majority:
/// the side that acquires the lease stays and the other downs itself, the minority trying a moment later, so a clean
/// partition keeps the majority as keep-majority does. Unlike keep-majority it keeps a survivor that only lost its peers:
/// two of three nodes killed at once, or the older of two while the third is still rejoining, where keep-majority downs
/// the last node standing. Without a database (a one-node island on SQLite, serving without a lease database) it is
/// keep-majority.
/// The winner keeps the lease until the nodes it downed are removed, then for release-after (Akka's default is 40 s).
/// Only the leader asks for the lease, and a node that rejoins at a lower address becomes the leader: had the previous
/// winner kept the lease, a second failure within those 40 s would make the new leader lose its own side's lease and down
/// every node (a chaos run did just that). Releasing after the lease's time to live, which is shorter than stable-after,
/// frees it before any later decision can come.
/// </summary>
public static class SplitBrainStrategy
{
    /// <summary>The resolver's option for <c>ClusterOptions.SplitBrainResolver</c>; applies the lease's settings to the config first.</summary>
    /// <param name="leaseConnectionString">The PostgreSQL database that holds the lease; null or empty for keep-majority.</param>
    /// <param name="leaseName">One name per cluster (an island, or the serving cluster).</param>
    public static SplitBrainResolverOption Apply(AkkaConfigurationBuilder akka, string? leaseConnectionString, string leaseName, TimeSpan stableAfter)
    {
        if (string.IsNullOrWhiteSpace(leaseConnectionString)) return new KeepMajorityOption();
        var lease = new JournalLeaseOption(leaseConnectionString, LeaseTimeToLive(stableAfter), JournalLease.SplitBrainConfigPath,
            acquireWaitsForExpiry: true);
        lease.Apply(akka);
        var releaseAfter = $"akka.cluster.split-brain-resolver.lease-majority.release-after = {(long)LeaseTimeToLive(stableAfter).TotalMilliseconds}ms";
        akka.AddHocon(Akka.Configuration.ConfigurationFactory.ParseString(releaseAfter), HoconAddMode.Prepend);
        return new LeaseMajorityOption { LeaseImplementation = lease, LeaseName = leaseName };
    }

    /// <summary>
    /// Half of stable-after (between 2 and 15 s): a holder that dies stops renewing, and its lease must be free by the time
    /// the survivors decide, which is at least stable-after after they stop hearing from it.
    /// </summary>
    public static TimeSpan LeaseTimeToLive(TimeSpan stableAfter) =>
        TimeSpan.FromTicks(Math.Clamp(stableAfter.Ticks / 2, TimeSpan.FromSeconds(2).Ticks, TimeSpan.FromSeconds(15).Ticks));
}
