using System.Threading.RateLimiting;

namespace Islands.Hosting;

/// <summary>
/// The serving node's limit on generations in flight: a concurrency rate limiter whose permit a synchronous request
/// holds while it waits, and an asynchronous one until its generation ends (so the middleware, whose permits end with
/// the HTTP request, cannot be used for it).
/// </summary>
public sealed class GenerationSlots(int permits) : IDisposable
{
    private readonly ConcurrencyLimiter limiter = new(new ConcurrencyLimiterOptions { PermitLimit = permits, QueueLimit = 0 });

    public int Permits { get; } = permits;

    /// <summary>A permit, or null when all are taken (the caller answers 429).</summary>
    public RateLimitLease? TryAcquire()
    {
        var lease = limiter.AttemptAcquire();
        if (lease.IsAcquired) return lease;
        lease.Dispose();
        return null;
    }

    public void Dispose() => limiter.Dispose();
}
