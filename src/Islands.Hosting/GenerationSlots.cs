using System.Threading.RateLimiting;

namespace Islands.Hosting;

/// <summary>
/// The serving node's limit on generations in flight, as an ASP.NET rate limiter: synchronous requests hold a permit
/// through the rate-limiting middleware, asynchronous ones take another until their generation ends. It reports itself
/// never idle, so the middleware never disposes the one shared instance.
/// </summary>
public sealed class GenerationSlots(int permits) : RateLimiter
{
    private readonly ConcurrencyLimiter inner = new(new ConcurrencyLimiterOptions { PermitLimit = permits, QueueLimit = 0 });

    public int Permits { get; } = permits;
    public override TimeSpan? IdleDuration => null;
    public override RateLimiterStatistics? GetStatistics() => inner.GetStatistics();
    protected override RateLimitLease AttemptAcquireCore(int permitCount) => inner.AttemptAcquire(permitCount);
    protected override ValueTask<RateLimitLease> AcquireAsyncCore(int permitCount, CancellationToken cancellationToken) => inner.AcquireAsync(permitCount, cancellationToken);

    protected override void Dispose(bool disposing)
    {
        // Owned by the node (a DI singleton), not by the middleware's partitions.
    }
}
