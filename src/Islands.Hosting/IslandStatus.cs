using Akka.Actor;
using Akka.Cluster;
using Islands.Actors;
using Islands.Diffusion.Numerics;

namespace Islands.Hosting;

public sealed record IslandMember(string Address, string Status, IReadOnlyList<string> Roles, bool Reachable);

/// <summary>What GET /status returns: the island's members as this node sees them, and the training job's status.</summary>
/// <param name="Lease">Who holds the island's training lease (PostgreSQL journals only): the node whose singleton may train.</param>
public sealed record IslandStatus(string Island, string Node, string? Leader, IReadOnlyList<IslandMember> Members, JobStatus? Job, string? JobError,
    NumericsStatus? Numerics = null, LeaseHolder? Lease = null)
{
    public static async Task<IslandStatus> Collect(ActorSystem system, IActorRef jobProxy, IslandNodeSettings settings, TimeSpan timeout,
        CancellationToken cancel)
    {
        var island = settings.Island;
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
        LeaseHolder? lease = null;
        if (settings.JournalProvider == "postgresql")
        {
            try
            {
                lease = (await JournalLease.HoldersAsync(settings.JournalConnectionString, cancel))
                    .FirstOrDefault(l => l.Name.Contains(IslandNode.SingletonName, StringComparison.Ordinal));
            }
            catch (Exception e) when (e is Npgsql.NpgsqlException or TimeoutException)
            {
                error ??= $"the lease could not be read from the {settings.JournalDescription}: {e.Message}";
            }
        }
        if (job is null && lease?.Owner is { } owner && !owner.StartsWith(cluster.SelfAddress.ToString(), StringComparison.Ordinal)
            && state.Members.All(m => !owner.StartsWith(m.Address.ToString() + "#", StringComparison.Ordinal)))
            error = $"{error}; the island's lease is held by {owner}, outside this cluster: its trainer stays stopped until that lease expires";
        return new IslandStatus(island, cluster.SelfAddress.ToString(), state.Leader?.ToString(), members, job, error,
            NumericsPolicy.ReportIfTested?.Status, lease);
    }
}
