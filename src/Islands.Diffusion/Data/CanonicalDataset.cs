using Islands.Diffusion.IO;

namespace Islands.Diffusion.Data;

/// <summary>A canonical dataset directory, loaded and verified against its manifest's hashes.</summary>
public sealed class CanonicalDataset
{
    public string Directory { get; }
    public DatasetManifest Manifest { get; }
    public LabeledImages Train { get; }
    public LabeledImages Test { get; }

    private CanonicalDataset(string directory, DatasetManifest manifest, LabeledImages train, LabeledImages test)
    {
        Directory = directory;
        Manifest = manifest;
        Train = train;
        Test = test;
    }

    public int ClassCount => Manifest.Classes.Count;

    public static CanonicalDataset Load(string directory, bool verifyHashes = true)
    {
        var manifestPath = Path.Combine(directory, DatasetManifest.FileName);
        if (!System.IO.Directory.Exists(directory))
            throw new DataFormatException(directory, "dataset directory not found (create one with 'islands data import')");
        if (!File.Exists(manifestPath))
            throw new DataFormatException(manifestPath, "not a dataset directory: manifest.json is missing (create one with 'islands data import')");
        var manifest = Json.Read<DatasetManifest>(manifestPath);
        if (manifest.SchemaVersion != DatasetManifest.CurrentSchemaVersion)
            throw new DataFormatException(manifestPath, $"schemaVersion {manifest.SchemaVersion} is not supported (expected " +
                $"{DatasetManifest.CurrentSchemaVersion})");
        LabeledImages ReadSplit(string split)
        {
            if (!manifest.Splits.TryGetValue(split, out var info)) throw new DataFormatException(manifestPath, $"split '{split}' is missing");
            var images = ReadVerified(directory, info.Images, manifest, verifyHashes);
            var labels = ReadVerified(directory, info.Labels, manifest, verifyHashes);
            if (labels.Length != info.Count || images.Length != (long)info.Count * manifest.ImageBytes)
                throw new DataFormatException(Path.Combine(directory, info.Images), $"size does not match the manifest's count {info.Count}");
            return new LabeledImages(images, labels, manifest.Channels, manifest.Height, manifest.Width);
        }
        return new CanonicalDataset(directory, manifest, ReadSplit("train"), ReadSplit("test"));
    }

    private static byte[] ReadVerified(string directory, string file, DatasetManifest manifest, bool verify)
    {
        var path = Path.Combine(directory, file);
        if (!File.Exists(path)) throw new DataFormatException(path, "file listed in manifest.json is missing");
        var bytes = File.ReadAllBytes(path);
        if (verify)
        {
            var actual = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes));
            if (!manifest.Sha256.TryGetValue(file, out var expected) || expected != actual)
                throw new DataFormatException(path, $"SHA-256 {actual[..12]}… does not match manifest.json; the dataset is corrupt, " +
                    "import it again");
        }
        return bytes;
    }
}
