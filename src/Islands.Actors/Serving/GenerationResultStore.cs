using Islands.Diffusion.IO;

namespace Islands.Actors.Serving;

/// <summary>
/// Finished generations on disk (one file each, written atomically in the wire format), so that a request retried with
/// the same Idempotency-Key is answered from here, by any serving node that shares the directory, and never computed twice.
/// </summary>
public sealed class GenerationResultStore(string directory)
{
    private const int RecentCount = 64;
    private readonly Dictionary<string, GenerationCompleted> recent = [];
    private readonly Queue<string> recentOrder = new();

    public string Directory { get; } = directory;

    /// <summary>
    /// Keeps the last results in memory as well: a retry right after is answered without reading the disk, and is
    /// answered even when the result could not be written. Not thread-safe: one router owns a store it remembers in.
    /// </summary>
    public void Remember(GenerationCompleted completed)
    {
        recent[completed.Id] = completed;
        recentOrder.Enqueue(completed.Id);
        while (recentOrder.Count > RecentCount) recent.Remove(recentOrder.Dequeue());
    }

    /// <summary>A result remembered or stored (by any node), or null.</summary>
    public GenerationCompleted? Find(string id) => recent.TryGetValue(id, out var done) ? done : TryLoad(id);

    private string PathOf(string id) => Path.Combine(Directory, id + ".bin");

    public void Save(GenerationCompleted completed)
    {
        System.IO.Directory.CreateDirectory(Directory);
        AtomicFile.WriteAllBytes(PathOf(completed.Id), IslandsSerializer.Encode(completed));
    }

    /// <summary>Deletes results last written before now - retention; returns how many.</summary>
    public int DeleteOlderThan(TimeSpan retention)
    {
        if (retention <= TimeSpan.Zero || !System.IO.Directory.Exists(Directory)) return 0;
        var cutoff = DateTime.UtcNow - retention;
        var deleted = 0;
        foreach (var file in System.IO.Directory.EnumerateFiles(Directory, "*.bin"))
        {
            if (File.GetLastWriteTimeUtc(file) >= cutoff) continue;
            try
            {
                File.Delete(file);
                deleted++;
            }
            catch (IOException)
            {
                // Another node deleted it first.
            }
        }
        return deleted;
    }

    public GenerationCompleted? TryLoad(string id)
    {
        var path = PathOf(id);
        if (!File.Exists(path)) return null;
        try
        {
            return (GenerationCompleted)IslandsSerializer.Decode(File.ReadAllBytes(path), typeof(GenerationCompleted));
        }
        catch (Exception e) when (e is System.Runtime.Serialization.SerializationException or System.Text.Json.JsonException or IOException)
        {
            // An unreadable result is treated as absent: the request is computed again rather than answered wrongly.
            return null;
        }
    }
}
