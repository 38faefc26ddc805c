namespace Islands.Diffusion.Checkpoints;

/// <summary>Written last inside a checkpoint directory: what a reader can trust. Names every file with its SHA-256.</summary>
public sealed record CheckpointManifest(int SchemaVersion, long Step, IReadOnlyDictionary<string, string> Files, float? Loss,
    DateTimeOffset CreatedUtc)
{
    public const int CurrentSchemaVersion = 1;
    public const string FileName = "manifest.json";
}

/// <summary>A committed checkpoint: its directory, step and the SHA-256 of its manifest (a single fingerprint for the whole set).</summary>
public sealed record CheckpointRef(string Directory, long Step, string ManifestSha256);
