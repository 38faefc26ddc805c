using Islands.Actors;
using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Training;
using Xunit.Abstractions;
using static Islands.Island.Tests.IslandTestEnvironment;

namespace Islands.Island.Tests;

/// <summary>An island job forced to NaN (islands.test.fault-nan-from-step) skips, rolls back, then ends diverged, on SQLite.</summary>
[Collection("islands")]
public sealed class IslandDivergenceSpecs(ITestOutputHelper output)
{
    [Fact]
    public async Task A_job_that_keeps_producing_nan_rolls_back_then_ends_diverged_with_the_reason_in_status_and_stays_diverged()
    {
        var (data, partitions) = await DatasetAsync();
        var store = TempDir("diverge");
        var config = Path.Combine(store, "node.json");
        await File.WriteAllTextAsync(config, NodeConfig(data, partitions, steps: 200,
            ("test:faultNanFromStep", "30"), ("training:maxConsecutiveBadSteps", 3), ("training:maxRollbacks", 2)));

        var first = await LocalIsland.StartNodeAsync("diverge", FreePort(), null, store, config, "sqlite", null);
        JobStatus? job = null;
        await Eventually(async () =>
        {
            job = (await LocalIsland.StatusAsync(first.Http)).Job;
            output.WriteLine($"{job?.Phase} step {job?.Step} bad {job?.BadSteps} rollbacks {job?.Rollbacks} last {job?.LastCheckpoint?.Step} error {job?.LastError}");
            return job is { Phase: "diverged" };
        }, TimeSpan.FromSeconds(150), "the job ends diverged");
        output.WriteLine($"{job!.Phase} at {job.Step}: {job.DivergedReason}");
        Assert.Contains("non-finite", job.DivergedReason);
        Assert.Contains("gave up after 2 rollback(s)", job.DivergedReason);
        Assert.Equal(job.DivergedReason, job.LastError);
        Assert.Equal(2, job.Rollbacks);
        Assert.Equal(25, job.LastCheckpoint!.Step);
        var run = Path.Combine(store, "diverge");
        Assert.Equal([25L], new RunDirectory(run).Checkpoints.List().Select(c => c.Step));
        var (published, directory) = PublishedCheckpoint.ReadVerified(run);
        Assert.Equal(25, published.Step); // nothing after the fault was published
        Assert.Null(WeightsFile.FirstNonFinite(Path.Combine(directory, ExpertTrainer.EmaFile)));
        await first.StopGracefullyAsync();
        await first.App.DisposeAsync();

        // The divergence is journaled: a new incarnation stays diverged instead of retrying for ever.
        var second = await LocalIsland.StartNodeAsync("diverge", FreePort(), null, store, config, "sqlite", null);
        try
        {
            await Eventually(async () => (job = (await LocalIsland.StatusAsync(second.Http)).Job) is { Phase: "diverged" },
                TimeSpan.FromSeconds(60), "the diverged job is recovered as diverged");
            Assert.Contains("non-finite", job!.DivergedReason);
            Assert.Equal(25, job.LastCheckpoint!.Step);
        }
        finally
        {
            await second.StopGracefullyAsync();
            await second.App.DisposeAsync();
        }
    }
}
