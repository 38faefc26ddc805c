using Islands.Actors;
using Xunit.Abstractions;
using static Islands.Island.Tests.IslandTestEnvironment;

namespace Islands.Island.Tests;

/// <summary>The island's lease in its PostgreSQL journal: at most one trainer per island, even with two clusters of it.</summary>
[Collection("islands")]
public sealed class IslandLeaseSpecs(ITestOutputHelper output)
{
    [Fact]
    public async Task Two_clusters_of_one_island_never_train_at_once_and_the_second_takes_over_when_the_first_dies()
    {
        const string island = "split";
        var (data, partitions) = await DatasetAsync();
        var store = TempDir("lease-split");
        Directory.CreateDirectory(store);
        var journal = await CreateDatabaseAsync(island);
        var config = Path.Combine(store, "node.json");
        await File.WriteAllTextAsync(config, NodeConfig(data, partitions, steps: 5000));
        // Two one-node clusters of the same island on one journal: what a partition, a long pause or a restarted seed
        // node that formed its own cluster leaves behind.
        var first = await LocalIsland.StartNodeAsync(island, FreePort(), null, store, config, "postgresql", journal);
        LocalNode? second = null;
        try
        {
            JobStatus? training = null;
            await Eventually(async () => (training = (await LocalIsland.StatusAsync(first.Http)).Job) is { Phase: "training", LastCheckpoint: not null },
                TimeSpan.FromSeconds(120), "the first cluster trains and commits a checkpoint");
            second = await LocalIsland.StartNodeAsync(island, FreePort(), null, store, config, "postgresql", journal);

            var watchUntil = DateTime.UtcNow + TimeSpan.FromSeconds(15);
            var firstSteps = new List<long>();
            while (DateTime.UtcNow < watchUntil)
            {
                var a = await LocalIsland.StatusAsync(first.Http);
                var b = await LocalIsland.StatusAsync(second.Http);
                Assert.Equal(["Up"], b.Members.Select(m => m.Status));
                Assert.DoesNotContain(b.Members, m => m.Address == first.Address);
                Assert.True(b.Job is null, $"the second cluster runs a job too: {b.Job?.Phase} at step {b.Job?.Step}");
                Assert.StartsWith(first.Address + "#", b.Lease!.Owner);
                Assert.Contains("lease is held by", b.JobError);
                Assert.Equal("training", a.Job!.Phase);
                firstSteps.Add(a.Job.Step);
            }
            Assert.True(firstSteps[^1] > firstSteps[0], $"the first cluster stopped training: steps {string.Join(", ", firstSteps)}");
            var lease = (await LocalIsland.StatusAsync(second.Http)).Lease!;
            var committed = (await LocalIsland.StatusAsync(first.Http)).Job!.LastCheckpoint!.Step;
            output.WriteLine($"second cluster waited 15 s beside the first (steps {firstSteps[0]}..{firstSteps[^1]}); lease epoch {lease.Epoch}; killing the first at committed step {committed}");

            await first.KillAsync();
            JobStatus? resumed = null;
            await Eventually(async () => (resumed = (await LocalIsland.StatusAsync(second.Http)).Job) is { Phase: "training", Recoveries: >= 1 },
                TimeSpan.FromSeconds(60), "the second cluster takes the lease once the first's has expired, and resumes the job");
            var after = (await LocalIsland.StatusAsync(second.Http)).Lease!;
            output.WriteLine($"resumed on {resumed!.Node} from step {resumed.ResumedFromStep}; lease {after.Owner} epoch {after.Epoch}");
            Assert.StartsWith(second.Address + "#", after.Owner);
            Assert.True(after.Epoch > lease.Epoch, $"lease epoch {after.Epoch} did not grow past {lease.Epoch} with the change of owner");
            Assert.True(resumed.ResumedFromStep >= committed, $"resumed from {resumed.ResumedFromStep}, but step {committed} was committed");
        }
        finally
        {
            if (first.Alive) await first.KillAsync();
            if (second is { Alive: true }) await second.KillAsync();
        }
    }
}
