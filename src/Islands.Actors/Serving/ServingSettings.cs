namespace Islands.Actors.Serving;

/// <summary>What serving's actors need from configuration (read and validated by the host).</summary>
/// <param name="Store">Checkpoint store the islands publish into.</param>
/// <param name="ResultsDirectory">Where finished generations are kept, so a retried request is answered, not recomputed.</param>
/// <param name="MaxBatchRows">Images in one routed step (the continuous batch).</param>
/// <param name="MaxWait">How long an idle router waits for more requests before its first step.</param>
/// <param name="ExpertDeadline">How long a step waits for an expert before leaving it out.</param>
/// <param name="ExpertCooldown">How long an expert that missed a deadline is left out before it is tried again.</param>
/// <param name="RequestTimeout">The longest a generation may take; then it fails instead of hanging.</param>
/// <param name="ResultRetention">How long stored results answer retries before they are deleted (zero keeps them forever).</param>
/// <param name="ProgressTimeout">How long a waiting client goes without news before it re-sends its request.</param>
/// <param name="StragglerFactor">
/// A step still waiting after this many times the experts' typical answer time is straggling: the next step starts
/// without waiting for it, and its rows wait only for their own experts (0: every step waits for all its experts).
/// </param>
/// <param name="SlowExpert">Fault injection for chaos and benchmarks: this node's sampler of this expert (-1: none) holds
/// every answer back by SlowExpertDelay, as a slowed node's would be.</param>
public sealed record ServingSettings(
    string Store, string ResultsDirectory, string Precision, int MaxBatchRows, TimeSpan MaxWait, TimeSpan ExpertDeadline,
    TimeSpan ExpertCooldown, TimeSpan RequestTimeout, TimeSpan ProgressTimeout, TimeSpan RescanInterval, long MaximumFrameBytes,
    TimeSpan ResultRetention = default, double StragglerFactor = 3, int SlowExpert = -1, TimeSpan SlowExpertDelay = default)
{
    /// <summary>Room for a message's JSON header and Akka's envelope beside its payload.</summary>
    public const long FrameHeadroom = 64 * 1024;

    /// <summary>Why messages for images of this many floats would not fit the remoting frame, or null when they do.</summary>
    public string? FrameProblem(long imageFloats, int maxImagesPerRequest)
    {
        var velocity = MaxBatchRows * imageFloats * 4 + FrameHeadroom;
        var result = maxImagesPerRequest * imageFloats + FrameHeadroom;
        return Math.Max(velocity, result) <= MaximumFrameBytes ? null
            : $"a step of islands:serving:batching:maxRows = {MaxBatchRows} images ({velocity / 1024} KiB) " +
              $"or a result of {maxImagesPerRequest} images ({result / 1024} KiB) " +
              $"does not fit akka.remote.dot-netty.tcp.maximum-frame-size ({MaximumFrameBytes / 1024} KiB): lower max-rows or raise the frame size";
    }

    public const string TorchDispatcher = "islands.serving.torch-dispatcher";
    public const string DefaultEnsemble = "default";
    public const int MaxImagesPerRequest = 256;
}
