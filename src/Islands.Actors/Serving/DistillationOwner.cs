using Islands.Diffusion.IO;

namespace Islands.Actors.Serving;

/// <summary>
/// The serving node incarnation that runs a distillation (owner.json in the job's directory). Where the results
/// directory is shared (compose's volume, one directory for the in-process test cluster), a job whose owner left the
/// cluster is adopted by one survivor: its own node restarted, or the Up member with the lowest address. An exclusive
/// claim file per departed owner lets only one of them take it, so a job never runs twice on one directory.
/// </summary>
public sealed record DistillationOwner(string Address, long Uid)
{
    public const string FileName = "owner.json";

    public static DistillationOwner? Read(string directory)
    {
        var path = Path.Combine(directory, FileName);
        return File.Exists(path) ? Json.Read<DistillationOwner>(path) : null;
    }

    public void Write(string directory) => Json.WriteAtomic(Path.Combine(directory, FileName), this);

    /// <summary>True for exactly one caller per departed owner (null: a job that never had one).</summary>
    public static bool Claim(string directory, DistillationOwner? departed)
    {
        var path = Path.Combine(directory, $"claimed-{departed?.Uid.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "unowned"}");
        try
        {
            using var _ = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
            return true;
        }
        catch (IOException) when (File.Exists(path))
        {
            return false;
        }
    }
}
