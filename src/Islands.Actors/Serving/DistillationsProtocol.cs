using Islands.Diffusion.Distillation;

namespace Islands.Actors.Serving;

// The protocol of DistillationsActor and its DistillationJobActor children: local to one serving node (a job runs
// where it was accepted and resumes there after a restart), so none of it crosses the network.

/// <summary>A validated distillation as the API accepted it: the run's config (its store is the node's), whether the
/// project's classifier scores it, and a translation's SDEdit strengths and guidance.</summary>
public sealed record DistillationRequest(DistillConfig Config, bool Evaluate, double[] Sdedit, double SdeditGuidance = 3);

/// <summary>Start (or find) distillation Id; answered with its <see cref="DistillationStatus"/> or <see cref="DistillationRefused"/>.</summary>
/// <param name="RequestHash">The request's digest: the same Id with another request is refused (Idempotency-Key reuse).</param>
public sealed record StartDistillation(string Id, DistillationRequest Request, string RequestHash);

public sealed record GetDistillation(string Id);

/// <summary>Stops a queued or running distillation; its checkpoint stays, and its status becomes cancelled.</summary>
public sealed record CancelDistillation(string Id);

/// <summary>Where a distillation stands.</summary>
/// <param name="Phase">queued, running, cancelling, completed, failed, cancelled, or unknown (this node never accepted it).</param>
/// <param name="Stage">sds, nfsd or calibrated (the bridge's second stage) at the last frame.</param>
/// <param name="Preview">The images at the last frame, as a PNG grid.</param>
/// <param name="DegradedRows">Prior evaluations answered without an expert they were routed to.</param>
/// <param name="Retries">Score queries sent again (no answer in time, or nothing to serve for a moment).</param>
public sealed record DistillationStatus(string Id, string Phase, string Stage, long Step, long Steps, float Direction, string? Detail,
    DistillationSummary? Summary, byte[]? Preview, long DegradedRows = 0, int Retries = 0)
{
    public bool Finished => Phase is "completed" or "failed" or "cancelled";
}

/// <param name="Status">The HTTP status to answer with (422: the Idempotency-Key belongs to another request).</param>
public sealed record DistillationRefused(string Id, int Status, string Reason);

/// <summary>Why a job failed (failed.json in its directory).</summary>
public sealed record DistillationFailure(string Detail);

/// <summary>How the cluster served a finished job (served.json): rows answered without an expert, queries sent again.</summary>
public sealed record DistillationServing(long DegradedRows, int Retries);
