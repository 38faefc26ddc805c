using System.Globalization;
using Islands.Diffusion.Checkpoints;

namespace Islands.Diffusion.Serving;

/// <summary>A model an island has published: where it lives and which checkpoint, already verified file by file.</summary>
public sealed record PublishedModel(string Job, int? Expert, string Island, long Step, string RunDirectory, string CheckpointDirectory,
    string ManifestSha256, DateTimeOffset PublishedUtc);

/// <summary>What a scan of a checkpoint store found: one expert per partition, the router, and what it had to refuse.</summary>
public sealed record PublishedModelScan(IReadOnlyList<PublishedModel> Experts, PublishedModel? Router, IReadOnlyList<string> Refused);

/// <summary>
/// Reads the models that islands have published into a checkpoint store (<c>&lt;store&gt;/&lt;island&gt;/published.json</c>).
/// Serving's registry starts from this: it needs no link to any island, and it never offers a checkpoint whose hashes
/// do not verify. When two islands publish the same expert, the newer publication wins and the other is reported.
/// </summary>
public static class PublishedModels
{
    /// <param name="cache">Verified publications from earlier scans, keyed by run directory: a publication whose file is
    /// unchanged is not hashed again (loaders verify once more before reading weights).</param>
    public static PublishedModelScan Scan(string store, IDictionary<string, (DateTime Written, long Length, PublishedModel Model)>? cache = null)
    {
        if (!Directory.Exists(store)) throw new ConfigException("store", $"{store}: checkpoint store not found");
        var found = new List<PublishedModel>();
        var refused = new List<string>();
        foreach (var run in Directory.GetDirectories(store).Order(StringComparer.Ordinal))
        {
            var file = new FileInfo(Path.Combine(run, PublishedCheckpoint.FileName));
            if (!file.Exists) continue;
            if (cache is not null && cache.TryGetValue(run, out var known) && known.Written == file.LastWriteTimeUtc && known.Length == file.Length)
            {
                found.Add(known.Model);
                continue;
            }
            try
            {
                var (published, directory) = PublishedCheckpoint.ReadVerified(run);
                // Weights with NaN or infinity are refused like a corrupt checkpoint.
                PublishedCheckpoint.ThrowIfNonFinite(published.Job, directory);
                var model = new PublishedModel(published.Job, ExpertIndex(published.Job), published.Island, published.Step, run, directory,
                    published.ManifestSha256, published.PublishedUtc);
                found.Add(model);
                if (cache is not null) cache[run] = (file.LastWriteTimeUtc, file.Length, model);
            }
            catch (CheckpointException e)
            {
                // A refused republication does not take the run's expert out of service: its last verified publication
                // (kept by the island's checkpoint retention, and verified again by the loader) goes on serving.
                if (cache is not null && cache.TryGetValue(run, out var previous))
                {
                    found.Add(previous.Model);
                    refused.Add($"{e.Message}; still serving its earlier step {previous.Model.Step}");
                }
                else
                {
                    refused.Add(e.Message);
                }
            }
        }
        var experts = new List<PublishedModel>();
        foreach (var group in found.Where(m => m.Expert is not null).GroupBy(m => m.Expert!.Value).OrderBy(g => g.Key))
        {
            var ordered = group.OrderByDescending(m => m.PublishedUtc).ToList();
            experts.Add(ordered[0]);
            refused.AddRange(ordered.Skip(1)
                .Select(m => $"{m.RunDirectory}: expert {m.Expert} is also published by {ordered[0].RunDirectory}, which is newer"));
        }
        var routers = found.Where(m => m.Job == "router").OrderByDescending(m => m.PublishedUtc).ToList();
        refused.AddRange(routers.Skip(1).Select(m => $"{m.RunDirectory}: a newer router is published by {routers[0].RunDirectory}"));
        return new PublishedModelScan(experts, routers.FirstOrDefault(), refused);
    }

    private static int? ExpertIndex(string job) => Methods.ExpertMethod.Index(job);
}
