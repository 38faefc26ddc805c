using Islands.Actors.Serving;
using Islands.Diffusion.Serving;

namespace Islands.Hosting;

/// <summary>The class names of the experts now served, read once per published snapshot (only the latest is kept).</summary>
public sealed class ServedClasses
{
    private sealed record Known(long Version, (int Count, IReadOnlyList<string> Names) Classes);

    private Known? latest;

    public (int Count, IReadOnlyList<string> Names) For(PublishedModelsSnapshot snapshot)
    {
        if (Volatile.Read(ref latest) is { } known && known.Version == snapshot.Version) return known.Classes;
        var classes = ServedModels.Classes(snapshot.Experts[0]);
        Volatile.Write(ref latest, new Known(snapshot.Version, classes));
        return classes;
    }
}
