namespace Islands.Actors.Serving;

/// <summary>What serving's actors need from configuration (read and validated by the host).</summary>
public sealed record ServingSettings
{
    /// <summary>Checkpoint store the islands publish into.</summary>
    public required string Store { get; init; }
    /// <summary>Where finished generations are kept, so a retried request is answered, not recomputed.</summary>
    public required string ResultsDirectory { get; init; }
    /// <summary>fp32 or bf16 arithmetic of the experts.</summary>
    public required string Precision { get; init; }
    /// <summary>Images in one routed step (the continuous batch).</summary>
    public required int MaxBatchRows { get; init; }
    /// <summary>How long an idle router waits for more requests before its first step.</summary>
    public required TimeSpan MaxWait { get; init; }
    /// <summary>How long a step waits for an expert before leaving it out.</summary>
    public required TimeSpan ExpertDeadline { get; init; }
    /// <summary>How long an expert that missed a deadline is left out before it is tried again.</summary>
    public required TimeSpan ExpertCooldown { get; init; }
    /// <summary>The longest a generation may take; then it fails instead of hanging.</summary>
    public required TimeSpan RequestTimeout { get; init; }
    /// <summary>How long a waiting client goes without news before it re-sends its request.</summary>
    public required TimeSpan ProgressTimeout { get; init; }
    public required TimeSpan RescanInterval { get; init; }
    public required long MaximumFrameBytes { get; init; }
    /// <summary>How long stored results answer retries before they are deleted (zero keeps them forever).</summary>
    public TimeSpan ResultRetention { get; init; }
    /// <summary>
    /// A step still waiting after this many times the experts' typical answer time is straggling: the next step starts
    /// without waiting for it, and its rows wait only for their own experts (0: every step waits for all its experts).
    /// </summary>
    public double StragglerFactor { get; init; } = 3;
    /// <summary>Fault injection for chaos and benchmarks: this node's sampler of this expert (-1: none) holds every answer
    /// back by SlowExpertDelay, as a slowed node's would be.</summary>
    public int SlowExpert { get; init; } = -1;
    public TimeSpan SlowExpertDelay { get; init; }

    /// <summary>Room for a message's JSON header and Akka's envelope beside its payload.</summary>
    public const long FrameHeadroom = 64 * 1024;

    /// <summary>The most rows of one score query: its points and velocities (float32) travel in one frame each.</summary>
    public int MaxScoreRows(long imageFloats) =>
        (int)Math.Clamp((MaximumFrameBytes - FrameHeadroom) / (imageFloats * sizeof(float)), 1, Diffusion.Serving.ScoreSpec.MaxRows);

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
