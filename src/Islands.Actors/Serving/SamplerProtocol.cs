using System.Text.Json.Serialization;

namespace Islands.Actors.Serving;

// The public protocol of SamplerActor: the router's velocity requests and the sampler's answers.

/// <summary>Rows of one routed step for one expert; the images travel as raw float32 in the payload.</summary>
public sealed record ExpertVelocityRequest(string Ensemble, int Expert, long PlanId, float[] T, long[] Classes, float[] Cfg, string? TraceParent)
    : IPayloadMessage
{
    [JsonIgnore] public byte[] Payload { get; init; } = [];
    public IPayloadMessage WithPayload(byte[] payload) => this with { Payload = payload };
}

/// <summary>The expert's velocities for the request's rows (float32 payload), and the checkpoint that computed them.</summary>
public sealed record ExpertVelocityReply(long PlanId, int Expert, string ManifestSha256, long Step) : IPayloadMessage
{
    [JsonIgnore] public byte[] Payload { get; init; } = [];
    public IPayloadMessage WithPayload(byte[] payload) => this with { Payload = payload };
}

/// <summary>The expert cannot answer (not published, or its checkpoint does not verify); the router leaves it out at once.</summary>
public sealed record ExpertVelocityFailed(long PlanId, int Expert, string Reason) : IIslandsMessage;
