using Islands.Actors.Serving;

namespace Islands.Hosting;

/// <summary>The JSON bodies the generation API answers with (named in its OpenAPI description).</summary>
public static partial class GenerationApi
{
    public sealed record GenerationStatus(string Id, string Status, int Step, int Steps, string Location);

    public sealed record GenerationTimings(double QueueSeconds, double ComputeSeconds, double TotalSeconds);

    /// <param name="Channels">Each image's channels (1 grey, 3 RGB), its height and its width in pixels.</param>
    /// <param name="NonFiniteImages">Images whose sampled values held a NaN or an infinity: their pixels say nothing (0 when all are finite).</param>
    public sealed record GenerationResult(string Id, int Count, long? Class, int Steps, double Cfg, string Strategy, string Sampler,
        long Seed, string[] Images, int[][] Routing, long[] ImageStepsByExpert, int[] LeftOutExperts, bool Degraded, int Retries,
        int RetriedImageSteps, GenerationTimings Timings,
        IReadOnlyList<ServedCheckpoint> Checkpoints, int NonFiniteImages, int Channels, int Height, int Width);

    public sealed record ExpertEntry(int Expert, bool Available, string? Island, long? Step, string? Checkpoint, string? ManifestSha256,
        DateTimeOffset? PublishedUtc);

    /// <param name="Sources">The island endpoints this node fetches publications from (empty when it reads the islands' store).</param>
    public sealed record ExpertsResponse(string Store, IReadOnlyList<ExpertEntry> Experts, ExpertEntry? Router, IReadOnlyList<string> Refused,
        DateTimeOffset ScannedUtc,
        IReadOnlyList<PublicationSourceStatus> Sources);
}
