using Akka.Actor;
using Akka.Cluster;
using Islands.Actors;
using Islands.Diffusion.Numerics;

namespace Islands.Hosting;

public sealed record IslandMember(string Address, string Status, IReadOnlyList<string> Roles, bool Reachable);

/// <summary>What GET /status returns: the island's members as this node sees them, and the training job's status.</summary>
public sealed record IslandStatus(string Island, string Node, string? Leader, IReadOnlyList<IslandMember> Members, JobStatus? Job, string? JobError,
    NumericsStatus? Numerics = null)
{
    public static async Task<IslandStatus> Collect(ActorSystem system, IActorRef jobProxy, string island, TimeSpan timeout)
    {
        var cluster = Cluster.Get(system);
        var state = cluster.State;
        var members = state.Members.Select(m => new IslandMember(m.Address.ToString(), m.Status.ToString(), m.Roles.ToList(),
            !state.Unreachable.Contains(m))).ToList();
        JobStatus? job = null;
        string? error = null;
        try
        {
            job = await jobProxy.Ask<JobStatus>(GetJobStatus.Instance, timeout);
        }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException)
        {
            error = $"the training job did not answer within {timeout.TotalSeconds:0} s (the singleton may be moving to another node)";
        }
        return new IslandStatus(island, cluster.SelfAddress.ToString(), state.Leader?.ToString(), members, job, error, NumericsPolicy.ReportIfTested?.Status);
    }
}
