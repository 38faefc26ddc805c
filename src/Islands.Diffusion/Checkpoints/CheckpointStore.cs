using System.Globalization;
using Islands.Diffusion.IO;

namespace Islands.Diffusion.Checkpoints;

/// <summary>
/// Checkpoints of one run: <c>checkpoints/step-000001000/</c> holding the weights, optimizer state, training state and
/// a manifest of SHA-256 hashes. A checkpoint is built in a temporary directory and committed by one rename, so a
/// crash leaves either the whole checkpoint or none of it. Loading verifies every hash first. A committed directory is
/// never rewritten: a second commit of the same step (a trainer that resumed from an older checkpoint, or a second
/// trainer) takes the next free name, <c>step-000001000-2</c>, so a reference kept elsewhere (a journal, a publication)
/// goes on naming the bytes it was written for.
/// </summary>
public sealed class CheckpointStore(string runDirectory)
{
    private const string Prefix = "step-";
    public string Root { get; } = Path.Combine(runDirectory, "checkpoints");

    /// <param name="revision">1 for the first commit of a step; 2, 3, ... for later ones.</param>
    public static string NameFor(long step, int revision = 1) =>
        Prefix + step.ToString("D9", CultureInfo.InvariantCulture) + (revision == 1 ? "" : "-" + revision.ToString(CultureInfo.InvariantCulture));

    public CheckpointRef Commit(long step, float? loss, Action<string> writeFiles)
    {
        var target = AtomicFile.WriteNewDirectory(revision => Path.Combine(Root, NameFor(step, revision)), temp =>
        {
            writeFiles(temp);
            var files = Directory.GetFiles(temp).Select(Path.GetFileName).Order(StringComparer.Ordinal)
                .ToDictionary(f => f!, f => AtomicFile.Sha256(Path.Combine(temp, f!)));
            var manifest = new CheckpointManifest(CheckpointManifest.CurrentSchemaVersion, step, files, loss, DateTimeOffset.UtcNow);
            File.WriteAllText(Path.Combine(temp, CheckpointManifest.FileName), Json.Serialize(manifest));
            foreach (var f in Directory.GetFiles(temp))
            {
                using var handle = new FileStream(f, FileMode.Open, FileAccess.ReadWrite);
                handle.Flush(flushToDisk: true);
            }
        });
        return new CheckpointRef(target, step, AtomicFile.Sha256(Path.Combine(target, CheckpointManifest.FileName)));
    }

    /// <summary>Committed checkpoints (complete directories with a manifest), newest first (by step, then revision). Temporary directories are
    /// ignored.</summary>
    public IReadOnlyList<(long Step, string Directory)> List()
    {
        if (!Directory.Exists(Root)) return [];
        return Directory.GetDirectories(Root)
            .Where(d => !AtomicFile.IsTemporary(d))
            .Select(d => (Parsed: Parse(Path.GetFileName(d)), Dir: d))
            .Where(x => x.Parsed is not null)
            .OrderByDescending(x => x.Parsed!.Value.Step).ThenByDescending(x => x.Parsed!.Value.Revision)
            .Select(x => (x.Parsed!.Value.Step, x.Dir))
            .ToList();
    }

    /// <summary>Step and revision of a checkpoint directory's name, or null for anything else.</summary>
    public static (long Step, int Revision)? Parse(string name)
    {
        if (!name.StartsWith(Prefix, StringComparison.Ordinal)) return null;
        var parts = name[Prefix.Length..].Split('-');
        if (parts.Length > 2 || !long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var step)) return null;
        if (parts.Length == 1) return (step, 1);
        return int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var revision) && revision >= 2 ? (step, revision) : null;
    }

    /// <summary>Throws <see cref="CheckpointException"/> unless every file of the checkpoint matches its manifest.</summary>
    public static CheckpointManifest Verify(string directory)
    {
        var manifestPath = Path.Combine(directory, CheckpointManifest.FileName);
        if (!File.Exists(manifestPath)) throw new CheckpointException(directory, "incomplete checkpoint: manifest.json is missing");
        CheckpointManifest manifest;
        try { manifest = Json.Read<CheckpointManifest>(manifestPath); }
        catch (IslandsException e) { throw new CheckpointException(manifestPath, "unreadable manifest", e); }
        if (manifest.SchemaVersion != CheckpointManifest.CurrentSchemaVersion)
            throw new CheckpointException(manifestPath, $"checkpoint schemaVersion {manifest.SchemaVersion} is not supported by this version " +
                $"(expected {CheckpointManifest.CurrentSchemaVersion})");
        foreach (var (file, expected) in manifest.Files)
        {
            var path = Path.Combine(directory, file);
            if (!File.Exists(path)) throw new CheckpointException(path, "missing file listed in the checkpoint manifest");
            var actual = AtomicFile.Sha256(path);
            if (actual != expected)
                throw new CheckpointException(path, $"corrupt: SHA-256 {actual[..12]}… does not match the manifest's {expected[..12]}…");
        }
        return manifest;
    }

    /// <summary>
    /// Verifies a checkpoint named by a reference kept elsewhere (a journal, a publication): the manifest must be the one
    /// whose SHA-256 was recorded, and every file must match it.
    /// </summary>
    public static CheckpointManifest VerifyReference(string directory, string manifestSha256)
    {
        VerifyManifestHash(directory, manifestSha256);
        return Verify(directory);
    }

    /// <summary>
    /// The cheap half of <see cref="VerifyReference"/>: the manifest is the one whose SHA-256 was recorded. For callers
    /// that verify the files next anyway (a restore) or that wrote and hashed them a moment ago (a publication).
    /// </summary>
    public static void VerifyManifestHash(string directory, string manifestSha256)
    {
        var manifestPath = Path.Combine(directory, CheckpointManifest.FileName);
        if (!Directory.Exists(directory)) throw new CheckpointException(directory, "checkpoint directory is missing");
        if (!File.Exists(manifestPath)) throw new CheckpointException(directory, "incomplete checkpoint: manifest.json is missing");
        var actual = AtomicFile.Sha256(manifestPath);
        if (actual != manifestSha256)
            throw new CheckpointException(manifestPath,
                $"corrupt: SHA-256 {actual[..12]}… differs from the recorded {manifestSha256[..Math.Min(12, manifestSha256.Length)]}…");
    }

    /// <summary>The newest checkpoint that verifies; corrupt newer ones are reported through <paramref name="skipped"/>.</summary>
    public (string Directory, CheckpointManifest Manifest)? NewestValid(List<CheckpointException>? skipped = null)
    {
        foreach (var (_, dir) in List())
        {
            try { return (dir, Verify(dir)); }
            catch (CheckpointException e) { skipped?.Add(e); }
        }
        return null;
    }

    /// <summary>Deletes all but the newest <paramref name="keep"/> checkpoints, plus temporary leftovers of crashed writers.</summary>
    public void Prune(int keep)
    {
        foreach (var (_, dir) in List().Skip(keep)) Directory.Delete(dir, recursive: true);
        if (!Directory.Exists(Root)) return;
        foreach (var dir in Directory.GetDirectories(Root).Where(AtomicFile.IsTemporary))
        {
            if (Directory.GetLastWriteTimeUtc(dir) < DateTime.UtcNow.AddMinutes(-10)) Directory.Delete(dir, recursive: true);
        }
    }
}
