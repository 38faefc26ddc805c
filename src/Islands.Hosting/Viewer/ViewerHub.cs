using System.Collections.Concurrent;
using System.Text.Json;

namespace Islands.Hosting.Viewer;

/// <summary>
/// The viewer's panels and the browsers watching them. A component publishes its panel whenever it likes; a browser is
/// sent a panel only when it changed. Publishing never waits for a browser: each one has a set of panels changed since
/// it last read, so a slow browser skips the states it had no time for and always gets the newest.
/// </summary>
public sealed class ViewerHub
{
    private readonly ConcurrentDictionary<string, (ViewerPanel Panel, string Json)> panels = new();
    private readonly ConcurrentDictionary<Subscriber, byte> subscribers = new();
    private readonly JsonSerializerOptions json;
    private TaskCompletionSource firstSubscriber = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public ViewerHub(JsonSerializerOptions json) => this.json = json;

    public int Subscribers => subscribers.Count;

    public IReadOnlyCollection<ViewerPanel> Panels => [.. panels.Values.Select(p => p.Panel)];

    /// <summary>Completes when at least one browser is connected (the feeds ask nobody anything while none is).</summary>
    public Task WaitForSubscriberAsync(CancellationToken cancel) =>
        subscribers.IsEmpty ? Volatile.Read(ref firstSubscriber).Task.WaitAsync(cancel) : Task.CompletedTask;

    public void Publish(ViewerPanel panel)
    {
        var text = JsonSerializer.Serialize(panel, json);
        var changed = true;
        panels.AddOrUpdate(panel.Id, (panel, text), (_, old) =>
        {
            changed = old.Json != text;
            return (panel, text);
        });
        if (!changed) return;
        foreach (var subscriber in subscribers.Keys) subscriber.Changed(panel.Id);
    }

    public void Remove(string id)
    {
        if (!panels.TryRemove(id, out _)) return;
        foreach (var subscriber in subscribers.Keys) subscriber.Changed(id);
    }

    public Subscriber Subscribe()
    {
        var subscriber = new Subscriber(this);
        foreach (var id in panels.Keys) subscriber.Changed(id);
        subscribers[subscriber] = 0;
        Interlocked.Exchange(ref firstSubscriber, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
        return subscriber;
    }

    /// <summary>One browser's view: the ids changed since it last read.</summary>
    public sealed class Subscriber(ViewerHub hub) : IDisposable
    {
        private readonly HashSet<string> changed = [];
        private readonly SemaphoreSlim signal = new(0, 1);

        internal void Changed(string id)
        {
            lock (changed)
            {
                if (!changed.Add(id) || changed.Count > 1) return;
            }
            if (signal.CurrentCount == 0)
            {
                try { signal.Release(); } catch (SemaphoreFullException) { }
            }
        }

        /// <summary>Waits (at most <paramref name="wait"/>) for changes; answers each changed panel, or a removed id with a null panel.</summary>
        public async Task<IReadOnlyList<(string Id, ViewerPanel? Panel)>> NextAsync(TimeSpan wait, CancellationToken cancel)
        {
            await signal.WaitAsync(wait, cancel);
            string[] ids;
            lock (changed)
            {
                ids = [.. changed];
                changed.Clear();
            }
            return [.. ids.Select(id => (id, hub.panels.TryGetValue(id, out var p) ? p.Panel : null))];
        }

        public void Dispose() => hub.subscribers.TryRemove(this, out _);
    }
}
