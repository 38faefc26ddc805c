using Islands.Actors;
using Islands.Diffusion.Checkpoints;
using Xunit.Abstractions;
using static Islands.Island.Tests.IslandTestEnvironment;

namespace Islands.Island.Tests;

/// <summary>Chaos tests 1 and 2: islands of in-process nodes on a real PostgreSQL journal, killed hard mid-training.</summary>
[Collection("islands")]
public sealed class IslandFailoverSpecs(ITestOutputHelper output)
{
    [Fact]
    public async Task Killing_the_singleton_node_resumes_training_on_a_survivor_from_the_last_committed_checkpoint()
    {
        var (data, partitions) = await DatasetAsync();
        var store = TempDir("failover");
        var journal = await CreateDatabaseAsync("failover");
        await using var island = await LocalIsland.StartAsync("failover", 3, store, NodeConfig(data, partitions, steps: 800), "postgresql", journal);

        JobStatus? before = null;
        await Eventually(async () =>
        {
            before = await island.JobAsync();
            return before is { Phase: "training", LastCheckpoint: not null } && before.Step < 500;
        }, TimeSpan.FromSeconds(120), "the island trains and commits a first checkpoint");
        var victim = island.NodeAt(before!.Node!);
        // Everything committed up to now is in the journal; a survivor may resume from nothing older.
        var committedAtKill = (await island.JobAsync(island.AnyAlive(victim)))!.LastCheckpoint!.Step;
        var members = (await island.StatusAsync(island.AnyAlive(victim))).Members;
        output.WriteLine($"killing {victim.Address} at step {before.Step}, last committed {committedAtKill}; members {string.Join(", ", members.Select(m => $"{m.Address} {m.Status}"))}");
        await victim.KillAsync();

        var observed = new List<JobStatus>();
        await Eventually(async () =>
        {
            var job = await island.JobAsync();
            // Only a training (or completed) job reports a real step; "recovering" reports 0 while it replays.
            if (job is not { Phase: "training" or "completed" } || job.Node == victim.Address) return false;
            observed.Add(job);
            return job.Recoveries >= 1;
        }, TimeSpan.FromSeconds(90), "the job is recovered on a survivor");
        var resumed = observed[^1];
        output.WriteLine($"resumed on {resumed.Node} from step {resumed.ResumedFromStep}, recoveries {resumed.Recoveries}");
        Assert.NotEqual(victim.Address, resumed.Node);
        Assert.True(resumed.ResumedFromStep >= committedAtKill, $"resumed from {resumed.ResumedFromStep}, but step {committedAtKill} was committed before the kill");

        JobStatus? done = null;
        await Eventually(async () =>
        {
            var job = await island.JobAsync();
            if (job is { Phase: "training" or "completed" }) observed.Add(job);
            done = job;
            return job is { Phase: "completed" };
        }, TimeSpan.FromSeconds(180), "the job completes");
        Assert.All(observed.Where(o => o.Node != victim.Address && o.Phase is "training" or "completed"), o => Assert.True(o.Step >= committedAtKill, $"step {o.Step} went back past the committed {committedAtKill}"));
        Assert.Equal(800, done!.Step);
        Assert.Equal(800, done.LastCheckpoint!.Step);
        CheckpointStore.VerifyReference(Path.Combine(island.RunDirectory, "checkpoints", done.LastCheckpoint.Checkpoint), done.LastCheckpoint.ManifestSha256);
        var (published, _) = PublishedCheckpoint.ReadVerified(island.RunDirectory);
        Assert.Equal(800, published.Step);
        Assert.Equal("expert:1", published.Job);
    }

    [Fact]
    public async Task Killing_one_island_entirely_leaves_the_other_islands_journal_checkpoints_and_progress_untouched()
    {
        var (data, partitions) = await DatasetAsync();
        var store = TempDir("two-islands");
        var journalA = await CreateDatabaseAsync("isle-a");
        var journalB = await CreateDatabaseAsync("isle-b");
        await using var a = await LocalIsland.StartAsync("isle-a", 2, store, NodeConfig(data, partitions, steps: 100_000), "postgresql", journalA, job: "expert:0");
        await using var b = await LocalIsland.StartAsync("isle-b", 1, store, NodeConfig(data, partitions, steps: 350), "postgresql", journalB, job: "expert:2");

        await Eventually(async () => (await a.JobAsync())?.LastCheckpoint is not null && (await b.JobAsync())?.LastCheckpoint is not null,
            TimeSpan.FromSeconds(120), "both islands commit a checkpoint");
        var bBefore = (await b.JobAsync())!;
        var bCheckpointsBefore = Directory.GetDirectories(Path.Combine(b.RunDirectory, "checkpoints")).Length;
        foreach (var node in a.Nodes) await node.KillAsync();
        output.WriteLine($"killed island a; island b at step {bBefore.Step} ({bBefore.ImagesPerSecond:F0} img/s)");

        JobStatus? bAfter = null;
        await Eventually(async () => (bAfter = await b.JobAsync()) is { Phase: "completed" }, TimeSpan.FromSeconds(180), "island b completes");
        output.WriteLine($"island b completed; last chunk {bAfter!.ImagesPerSecond:F0} img/s");
        Assert.Equal(0, bAfter.Recoveries);
        Assert.Equal(0, bAfter.WorkerRestarts);
        Assert.Empty(bAfter.RejectedCheckpoints);
        Assert.True(bAfter.Step > bBefore.Step);
        Assert.Equal(["island-isle-b-training-job"], await PersistenceIdsAsync(journalB));
        Assert.Equal(["island-isle-a-training-job"], await PersistenceIdsAsync(journalA));
        Assert.True(Directory.GetDirectories(Path.Combine(b.RunDirectory, "checkpoints")).Length >= Math.Min(bCheckpointsBefore, 1));
        Assert.All(new CheckpointStore(b.RunDirectory).List(), c => CheckpointStore.Verify(c.Directory));
        Assert.Equal("expert:2", PublishedCheckpoint.ReadVerified(b.RunDirectory).Published.Job);
        Assert.Equal("isle-b", PublishedCheckpoint.ReadVerified(b.RunDirectory).Published.Island);
    }
}

[CollectionDefinition("islands", DisableParallelization = true)]
public sealed class IslandsCollection;
