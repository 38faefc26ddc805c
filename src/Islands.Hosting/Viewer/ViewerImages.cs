using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace Islands.Hosting.Viewer;

/// <summary>
/// The images panels show, by content: an image's URL is its hash, so a panel changes (and a browser fetches) only when
/// the picture does, and the browser may cache it for ever. Holds the newest <see cref="Capacity"/> images.
/// </summary>
public sealed class ViewerImages
{
    public const int Capacity = 256;
    public const string Route = "/viewer/images";

    private readonly ConcurrentDictionary<string, (byte[] Png, long Order)> images = new();
    private long order;

    /// <summary>Keeps a PNG and answers its URL.</summary>
    public string Put(byte[] png)
    {
        var id = Convert.ToHexStringLower(SHA256.HashData(png))[..32];
        images[id] = (png, Interlocked.Increment(ref order));
        if (images.Count > Capacity)
            foreach (var old in images.OrderBy(i => i.Value.Order).Take(images.Count - Capacity).ToList()) images.TryRemove(old.Key, out _);
        return $"{Route}/{id}.png";
    }

    public byte[]? Get(string id) => images.TryGetValue(id, out var image) ? image.Png : null;
}
