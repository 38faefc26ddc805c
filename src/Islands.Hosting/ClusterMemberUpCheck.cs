using Akka.Actor;
using Akka.Cluster;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Islands.Hosting;

/// <summary>Readiness of any node: its cluster member is Up (it has joined and the leader has admitted it).</summary>
internal sealed class ClusterMemberUpCheck(ActorSystem system) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var status = Cluster.Get(system).SelfMember.Status;
        return Task.FromResult(status == MemberStatus.Up ? HealthCheckResult.Healthy("member is up") : HealthCheckResult.Unhealthy($"member is {status}"));
    }
}
