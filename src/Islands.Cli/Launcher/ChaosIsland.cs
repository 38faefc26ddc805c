namespace Islands.Cli.Launcher;

/// <param name="Problems">Every checkpoint or publication that failed verification, and why.</param>
/// <param name="JournalReferenceVerified">The job's last committed checkpoint, as its journal names it (directory and manifest hash),
/// verifies.</param>
/// <param name="ClusterProblem">Null when every live node of the island is in one cluster with all the others; else what the nodes see.</param>
public sealed record ChaosIsland(string Island, string Phase, long Step, long TotalSteps, int Recoveries, int CheckpointsOnDisk,
    int CheckpointsVerified, IReadOnlyList<string> Problems, bool PublicationVerified, bool JournalReferenceVerified, string? ClusterProblem);
