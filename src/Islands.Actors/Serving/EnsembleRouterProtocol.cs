using System.Text.Json.Serialization;

namespace Islands.Actors.Serving;

// The public protocol of EnsembleRouterActor: what the HTTP API and the watchers send it and what it answers.

/// <summary>A generation as clients state it (validated by the API before it gets here).</summary>
/// <param name="Sampler">The ODE stepper, euler or heun; null is euler (and keeps the digest of requests stored before it existed).</param>
public sealed record GenerationRequest(int Count, long[]? Classes, int Steps, double Cfg, string Strategy, long Seed,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Sampler = null)
{
    /// <summary>The core's generation spec (throws <see cref="Diffusion.ConfigException"/> for a strategy or sampler it does not know).</summary>
    public Diffusion.Serving.GenerationSpec ToSpec() => new(Count, Classes, Steps, Cfg, Diffusion.Routing.RoutingStrategy.Parse(Strategy), Seed,
        Sampler ?? Diffusion.Sampling.FlowStep.Euler);
}

/// <summary>Start (or join) generation Id. The sender receives accepted, progress, and completed or failed.</summary>
/// <param name="RequestHash">Digest of the request; the same Id with a different request is refused (Idempotency-Key reuse).</param>
public sealed record Generate(string Id, string Ensemble, GenerationRequest Request, string RequestHash, string? TraceParent) : IIslandsMessage;

public sealed record GenerationAccepted(string Id, int QueuedImages) : IIslandsMessage;

public sealed record GenerationProgress(string Id, int Step, int Steps, int[] LeftOutExperts) : IIslandsMessage;

public sealed record ServedCheckpoint(string Job, long Step, string ManifestSha256);

/// <summary>
/// The images as raw uint8 [Count, C, H, W] in the payload, with the routing of every image at every step.
/// NonFiniteImages counts the images whose final state held a NaN or an infinity (their pixels are then meaningless);
/// results stored before it existed read as 0.
/// </summary>
public sealed record GenerationCompleted(string Id, string Ensemble, GenerationRequest Request, string RequestHash,
    int Channels, int Height, int Width, int ExpertCount, int[] LeftOutExperts, int[][] Routing, int RetriedRowSteps,
    double QueueSeconds, double TotalSeconds, IReadOnlyList<ServedCheckpoint> Checkpoints,
    DateTimeOffset CompletedUtc, int NonFiniteImages = 0) : IPayloadMessage
{
    [JsonIgnore] public byte[] Payload { get; init; } = [];
    public IPayloadMessage WithPayload(byte[] payload) => this with { Payload = payload };

    /// <summary>The answer to a request from the core's finished generation and the checkpoints that computed it.</summary>
    public static GenerationCompleted Of(Diffusion.Serving.CompletedGeneration done, string ensemble, Generate request,
        (long C, long H, long W) shape,
        int expertCount, IReadOnlyList<ServedCheckpoint> checkpoints) =>
        new(done.Id, ensemble, request.Request, request.RequestHash, (int)shape.C, (int)shape.H, (int)shape.W, expertCount, done.LeftOutExperts,
            done.Routing, done.RetriedRowSteps, done.QueueSeconds, done.TotalSeconds, checkpoints, DateTimeOffset.UtcNow, done.NonFiniteImages)
        { Payload = done.Pixels };
}

/// <summary>Status is the HTTP status the API answers with (409 key reuse, 503 nothing to serve, 504 too slow).</summary>
public sealed record GenerationFailed(string Id, int Status, string Reason) : IIslandsMessage;

public sealed record GetGeneration(string Id, string Ensemble) : IIslandsMessage;

/// <summary>Phase: queued, running, completed or unknown (this router has not seen it).</summary>
public sealed record GenerationState(string Id, string Phase, int Step, int Steps) : IIslandsMessage;

/// <summary>
/// Velocities of the routed ensemble at given points (a score query): rows of x_t as raw float32 in the payload, each
/// with its time, class (-1 unconditional) and guidance scale. The router answers <see cref="ScoreAnswer"/> or
/// <see cref="GenerationFailed"/> (400 bad rows, 503 nothing to serve, 504 too slow).
/// </summary>
public sealed record ScoreQuery(string Id, string Ensemble, float[] T, long[] Classes, float[] Cfg, string Strategy, string? TraceParent)
    : IPayloadMessage
{
    [JsonIgnore] public byte[] Payload { get; init; } = [];
    public IPayloadMessage WithPayload(byte[] payload) => this with { Payload = payload };
}

/// <summary>The routed velocities (float32 payload, the query's rows in order), the expert each row leaned on most, and
/// the experts left out (their rows renormalised over the others, as a degraded generation's).</summary>
public sealed record ScoreAnswer(string Id, int Channels, int Height, int Width, int[] Routing, int[] LeftOutExperts,
    IReadOnlyList<ServedCheckpoint> Checkpoints, double TotalSeconds) : IPayloadMessage
{
    [JsonIgnore] public byte[] Payload { get; init; } = [];
    public IPayloadMessage WithPayload(byte[] payload) => this with { Payload = payload };
}
