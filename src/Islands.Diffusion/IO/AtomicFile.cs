using System.Security.Cryptography;

namespace Islands.Diffusion.IO;

/// <summary>
/// Writes files and directories so that a reader sees either the old content or the complete new one, never a
/// half-written file: write to a temporary name in the same directory, flush to disk, then rename.
/// </summary>
public static class AtomicFile
{
    public static void WriteAllBytes(string path, byte[] bytes)
    {
        Write(path, stream => stream.Write(bytes));
    }

    public static void WriteAllText(string path, string text) => WriteAllBytes(path, System.Text.Encoding.UTF8.GetBytes(text));

    public static void Write(string path, Action<Stream> write)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temp = TempSibling(full);
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    /// <summary>Builds a directory under a temporary name, then renames it into place; on failure nothing is left behind.</summary>
    public static void WriteDirectory(string path, Action<string> fill, bool replace = false)
    {
        var full = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar);
        var parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        var temp = TempSibling(full);
        Directory.CreateDirectory(temp);
        try
        {
            fill(temp);
            if (Directory.Exists(full))
            {
                if (!replace) throw new IOException($"{full}: already exists");
                var old = TempSibling(full) + ".old";
                Directory.Move(full, old);
                Directory.Move(temp, full);
                Directory.Delete(old, recursive: true);
            }
            else
            {
                Directory.Move(temp, full);
            }
        }
        catch
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            throw;
        }
    }

    /// <summary>
    /// Builds a directory under a temporary name, then renames it to the first of <paramref name="nameFor"/>(1), (2), ...
    /// that does not exist yet; an existing directory is never replaced. Returns the name it took.
    /// </summary>
    public static string WriteNewDirectory(Func<int, string> nameFor, Action<string> fill)
    {
        var first = Path.GetFullPath(nameFor(1)).TrimEnd(Path.DirectorySeparatorChar);
        Directory.CreateDirectory(Path.GetDirectoryName(first)!);
        var temp = TempSibling(first);
        Directory.CreateDirectory(temp);
        try
        {
            fill(temp);
            for (var revision = 1; ; revision++)
            {
                var target = Path.GetFullPath(nameFor(revision)).TrimEnd(Path.DirectorySeparatorChar);
                if (Directory.Exists(target) || File.Exists(target)) continue;
                try
                {
                    Directory.Move(temp, target);
                    return target;
                }
                // Another writer took this name between the check and the rename: try the next one.
                catch (IOException) when (Directory.Exists(target) && Directory.Exists(temp))
                {
                }
            }
        }
        catch
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            throw;
        }
    }

    /// <summary>Temporary names start with '.' and end with '.tmp' so listings and cleanup can skip them.</summary>
    public static string TempSibling(string full) =>
        Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");

    public static bool IsTemporary(string path) => Path.GetFileName(path).StartsWith('.') && path.EndsWith(".tmp", StringComparison.Ordinal);

    public static string Sha256(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
