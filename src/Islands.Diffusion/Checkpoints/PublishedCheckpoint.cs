using Islands.Diffusion.IO;

namespace Islands.Diffusion.Checkpoints;

/// <summary>
/// <c>published.json</c> in a run directory: the checkpoint that the run's owner has committed (for an island: recorded in
/// its journal) and offers to readers such as serving. It is written last and atomically, after the checkpoint itself,
/// and names every file with its SHA-256, so a reader on another machine needs no link to the writer to trust it.
/// </summary>
/// <param name="ConfigSha256">SHA-256 of the run's config.json (the model's shape), which a reader that fetches the
/// checkpoint from afar needs beside the weights; null in publications written before it was recorded.</param>
public sealed record PublishedCheckpoint(
    int SchemaVersion, string Job, string Island, long Step, string Checkpoint, string ManifestSha256,
    IReadOnlyDictionary<string, string> Files, float? Loss, DateTimeOffset PublishedUtc, string? ConfigSha256 = null)
{
    public const int CurrentSchemaVersion = 1;
    public const string FileName = "published.json";

    /// <summary>
    /// Publishes a checkpoint its writer has just committed. Only the manifest's hash is checked here (the files were
    /// hashed as they were written); readers verify every file with <see cref="ReadVerified"/>.
    /// </summary>
    public static PublishedCheckpoint Publish(string runDirectory, string job, string island, CheckpointRef checkpoint)
    {
        CheckpointStore.VerifyManifestHash(checkpoint.Directory, checkpoint.ManifestSha256);
        ThrowIfNonFinite(job, checkpoint.Directory);
        var manifest = Json.Read<CheckpointManifest>(Path.Combine(checkpoint.Directory, CheckpointManifest.FileName));
        var config = Path.Combine(runDirectory, Training.RunDirectory.ConfigFile);
        var published = new PublishedCheckpoint(CurrentSchemaVersion, job, island, checkpoint.Step,
            Path.GetRelativePath(runDirectory, checkpoint.Directory), checkpoint.ManifestSha256, manifest.Files, manifest.Loss, DateTimeOffset.UtcNow,
            File.Exists(config) ? AtomicFile.Sha256(config) : null);
        Json.WriteAtomic(Path.Combine(runDirectory, FileName), published);
        return published;
    }

    /// <summary>
    /// Throws <see cref="CheckpointException"/> when the weights that readers serve from this checkpoint (the router's,
    /// or an expert's EMA) hold NaN or infinity: such a checkpoint is never published, and serving refuses it.
    /// </summary>
    public static void ThrowIfNonFinite(string job, string directory)
    {
        var file = Path.Combine(directory, job == "router" ? Routing.RouterTrainer.WeightsFile : Training.ExpertTrainer.EmaFile);
        if (!File.Exists(file)) return; // the loader reports a missing weights file
        if (WeightsFile.FirstNonFinite(file) is { } tensor)
            throw new CheckpointException(file, $"tensor '{tensor}' is not finite (NaN or infinity); refusing to publish or serve it");
    }

    /// <summary>Reads a run's published checkpoint and verifies the manifest and every file it names; throws if anything differs.</summary>
    public static (PublishedCheckpoint Published, string Directory) ReadVerified(string runDirectory)
    {
        var path = Path.Combine(runDirectory, FileName);
        if (!File.Exists(path)) throw new CheckpointException(path, "nothing published yet");
        PublishedCheckpoint published;
        try { published = Json.Read<PublishedCheckpoint>(path); }
        catch (IslandsException e) { throw new CheckpointException(path, "unreadable publication", e); }
        if (published.SchemaVersion != CurrentSchemaVersion)
            throw new CheckpointException(path, $"schemaVersion {published.SchemaVersion} is not supported (expected {CurrentSchemaVersion})");
        var directory = Path.GetFullPath(Path.Combine(runDirectory, published.Checkpoint));
        var manifest = CheckpointStore.VerifyReference(directory, published.ManifestSha256);
        if (!manifest.Files.OrderBy(f => f.Key, StringComparer.Ordinal).SequenceEqual(published.Files.OrderBy(f => f.Key, StringComparer.Ordinal)))
            throw new CheckpointException(path, "the files it names differ from the checkpoint's manifest");
        return (published, directory);
    }
}
