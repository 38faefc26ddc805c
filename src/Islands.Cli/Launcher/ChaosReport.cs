namespace Islands.Cli.Launcher;

public sealed record ChaosReport(double Seconds, IReadOnlyList<ChaosKill> Kills, IReadOnlyList<ChaosIsland> Islands, int RequestsServed,
    int RequestsLost, int RequestsRetried, int RequestsDegraded, IReadOnlyList<string> LostReasons, string? ServingClusterProblem,
    string? ServingBehindProblem = null)
{
    /// <summary>Every serving node serves exactly the checkpoint each island last published (fetched over HTTP and verified).</summary>
    public bool ServingCurrent => ServingBehindProblem is null;
    public int JobsCompleted => Islands.Count(i => i.Phase == "completed");
    public bool AllCheckpointsVerified => Islands.All(i => i.CheckpointsVerified == i.CheckpointsOnDisk && i.PublicationVerified
        && i.JournalReferenceVerified);
    public bool OneClusterEverywhere => ServingClusterProblem is null && Islands.All(i => i.ClusterProblem is null);
}
