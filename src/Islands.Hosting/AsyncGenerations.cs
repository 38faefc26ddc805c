using System.Collections.Concurrent;
using Islands.Actors;
using Islands.Actors.Serving;

namespace Islands.Hosting;

/// <summary>How <see cref="AsyncGenerations.Begin"/> answered a new asynchronous request.</summary>
public enum AsyncBegin
{
    /// <summary>New here: the caller starts the generation.</summary>
    Started,
    /// <summary>The same request is already running on this node: answer its status.</summary>
    Running,
    /// <summary>The Idempotency-Key is held by a different request: answer 422.</summary>
    Conflict,
}

/// <summary>
/// What one serving node knows of the asynchronous generations it accepted, until their result is stored: the request's
/// digest (so a reused Idempotency-Key with another body is refused, never answered with the other request's images)
/// and the latest news for GET. A failure is kept for <c>failed-retention</c>, at most <c>maxFailures</c> of them, then
/// forgotten (GET answers 404 as for any id it never saw), so failures cannot grow the node's memory without bound.
/// </summary>
public sealed class AsyncGenerations(TimeSpan failedRetention, int maxFailures = 10_000, TimeProvider? clock = null)
{
    private sealed record Entry(string RequestHash, IIslandsMessage Latest, DateTimeOffset? FailedUtc);

    private readonly ConcurrentDictionary<string, Entry> entries = new();
    private readonly TimeProvider time = clock ?? TimeProvider.System;
    private int failures;
    private long lastSweepTicks;

    /// <summary>Generations tracked now (running, or failed and still reported).</summary>
    public int Count => entries.Count;

    public AsyncBegin Begin(string id, string requestHash, out IIslandsMessage latest)
    {
        Sweep();
        var started = new Entry(requestHash, new GenerationAccepted(id, 0), null);
        while (true)
        {
            if (entries.TryAdd(id, started))
            {
                latest = started.Latest;
                return AsyncBegin.Started;
            }
            if (!entries.TryGetValue(id, out var known)) continue;
            latest = known.Latest;
            if (known.RequestHash != requestHash) return AsyncBegin.Conflict;
            if (known.FailedUtc is null) return AsyncBegin.Running;
            // The same request failed before: a retry runs it again.
            if (entries.TryUpdate(id, started, known))
            {
                Interlocked.Decrement(ref failures);
                latest = started.Latest;
                return AsyncBegin.Started;
            }
        }
    }

    /// <summary>Records news of a generation; a completed one is dropped (its stored result answers from now on).</summary>
    public void Update(string id, IIslandsMessage message)
    {
        if (!entries.TryGetValue(id, out var known) || known.FailedUtc is not null) return;
        if (message is GenerationCompleted)
        {
            entries.TryRemove(new KeyValuePair<string, Entry>(id, known));
            return;
        }
        var failed = message is GenerationFailed;
        if (entries.TryUpdate(id, known with { Latest = message, FailedUtc = failed ? time.GetUtcNow() : null }, known) && failed)
            Interlocked.Increment(ref failures);
    }

    /// <summary>Forgets a generation that never started here (refused, or no slot for it).</summary>
    public void Forget(string id) => entries.TryRemove(id, out _);

    public bool TryGet(string id, out IIslandsMessage latest)
    {
        Sweep();
        if (entries.TryGetValue(id, out var known))
        {
            latest = known.Latest;
            return true;
        }
        latest = null!;
        return false;
    }

    private void Sweep()
    {
        var count = Volatile.Read(ref failures);
        if (count == 0) return;
        var now = time.GetUtcNow();
        // At most one sweep a second unless over the cap: a sweep sorts the failures.
        var last = Interlocked.Read(ref lastSweepTicks);
        if (count <= maxFailures && now.UtcTicks - last < TimeSpan.TicksPerSecond) return;
        if (Interlocked.CompareExchange(ref lastSweepTicks, now.UtcTicks, last) != last) return;
        var failed = entries.Where(e => e.Value.FailedUtc is not null).OrderBy(e => e.Value.FailedUtc).ToList();
        var over = failed.Count - maxFailures;
        foreach (var (entry, index) in failed.Select((e, i) => (e, i)))
        {
            if (index >= over && now - entry.Value.FailedUtc < failedRetention) break;
            if (entries.TryRemove(entry)) Interlocked.Decrement(ref failures);
        }
    }
}
