namespace Islands.Diffusion.Data;

/// <summary>The manifest of a canonical dataset directory. Images are raw uint8 (N x C x H x W), labels raw uint8.</summary>
public sealed record DatasetManifest(
    int SchemaVersion,
    string Name,
    string Source,
    int Channels,
    int Height,
    int Width,
    IReadOnlyList<string> Classes,
    IReadOnlyDictionary<string, DatasetSplitInfo> Splits,
    IReadOnlyDictionary<string, string> Sha256,
    DateTimeOffset CreatedUtc)
{
    public const int CurrentSchemaVersion = 1;
    public const string FileName = "manifest.json";
    public int ImageBytes => Channels * Height * Width;
}

public sealed record DatasetSplitInfo(int Count, string Images, string Labels);
