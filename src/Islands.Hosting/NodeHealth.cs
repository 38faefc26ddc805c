using Akka.Cluster.Hosting;
using Akka.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Islands.Hosting;

/// <summary>
/// Liveness and readiness of any node (island or serving) from Akka.Hosting's own health checks: live while its actor
/// system runs, ready once it has joined its cluster. /health/live and /health/ready answer 200 or 503.
/// </summary>
public static class NodeHealth
{
    private const string LivenessTag = "liveness";
    private const string ReadinessTag = "ready";

    public static AkkaConfigurationBuilder WithNodeHealthChecks(this AkkaConfigurationBuilder akka) =>
        akka.WithActorSystemLivenessCheck().WithAkkaClusterReadinessCheck();

    public static RouteGroupBuilder MapNodeHealth(this IEndpointRouteBuilder app)
    {
        var health = app.MapGroup("/health");
        health.MapHealthChecks("/live", new HealthCheckOptions { Predicate = c => c.Tags.Contains(LivenessTag) });
        health.MapHealthChecks("/ready", new HealthCheckOptions { Predicate = c => c.Tags.Contains(ReadinessTag) });
        return health;
    }
}
