using Islands.Hosting.Configuration;
using Islands.Actors;
using Islands.Diffusion.Checkpoints;
using Xunit.Abstractions;
using static Islands.Island.Tests.IslandTestEnvironment;

namespace Islands.Island.Tests;

/// <summary>Chaos test 4 and graceful stop, on the embedded SQLite journal of a one-node island.</summary>
[Collection("islands")]
public sealed class IslandRecoverySpecs(ITestOutputHelper output)
{
    [Fact]
    public async Task A_corrupt_committed_checkpoint_is_detected_journaled_and_skipped_for_the_previous_one()
    {
        var (data, partitions) = await DatasetAsync();
        var store = TempDir("corrupt");
        var config = Path.Combine(store, "node.json");
        await File.WriteAllTextAsync(config, NodeConfig(data, partitions, steps: 400));

        var first = await LocalIsland.StartNodeAsync("corrupt", FreePort(), null, store, config, "sqlite", null);
        JobStatus? job = null;
        await Eventually(async () => (job = (await LocalIsland.StatusAsync(first.Http)).Job) is { LastCheckpoint.Step: >= 50, Phase: "training" },
            TimeSpan.FromSeconds(120), "two checkpoints are committed");
        await first.KillAsync();
        await first.App.DisposeAsync();
        var newest = job!.LastCheckpoint!;
        var model = Path.Combine(store, "corrupt", "checkpoints", newest.Checkpoint, "model.bin");
        var bytes = await File.ReadAllBytesAsync(model);
        bytes[bytes.Length / 2] ^= 0xFF;
        await File.WriteAllBytesAsync(model, bytes);
        output.WriteLine($"corrupted {model} (step {newest.Step})");

        var second = await LocalIsland.StartNodeAsync("corrupt", FreePort(), null, store, config, "sqlite", null);
        await Eventually(async () => (job = (await LocalIsland.StatusAsync(second.Http)).Job) is { Phase: "training" or "completed", ResumedFromStep: not null },
            TimeSpan.FromSeconds(120), "the job resumes");
        output.WriteLine($"resumed from {job!.ResumedFromStep}; rejected: {string.Join("; ", job.RejectedCheckpoints)}");
        Assert.Equal(newest.Step - 25, job.ResumedFromStep);
        Assert.Contains(job.RejectedCheckpoints, r => r.StartsWith(newest.Checkpoint, StringComparison.Ordinal) && r.Contains("SHA-256", StringComparison.Ordinal));
        await Eventually(async () => (job = (await LocalIsland.StatusAsync(second.Http)).Job) is { Phase: "completed" }, TimeSpan.FromSeconds(120), "the job completes");
        await second.StopGracefullyAsync();
        await second.App.DisposeAsync();

        // A third incarnation rebuilds its state from the journal alone: the rejection was recorded there.
        await using var third = new NodeScope(await LocalIsland.StartNodeAsync("corrupt", FreePort(), null, store, config, "sqlite", null));
        await Eventually(async () => (job = (await LocalIsland.StatusAsync(third.Node.Http)).Job) is { Phase: "completed" }, TimeSpan.FromSeconds(60), "the completed job is recovered");
        Assert.Contains(job!.RejectedCheckpoints, r => r.StartsWith(newest.Checkpoint, StringComparison.Ordinal));
        Assert.Equal(400, job.LastCheckpoint!.Step);
        PublishedCheckpoint.ReadVerified(Path.Combine(store, "corrupt"));
    }

    [Fact]
    public async Task A_completed_job_whose_final_checkpoint_is_gone_reopens_and_trains_again_from_the_newest_that_verifies()
    {
        var (data, partitions) = await DatasetAsync();
        var store = TempDir("reopen");
        var config = Path.Combine(store, "node.json");
        await File.WriteAllTextAsync(config, NodeConfig(data, partitions, steps: 100));
        JobStatus? job = null;
        await using (var first = new NodeScope(await LocalIsland.StartNodeAsync("reopen", FreePort(), null, store, config, "sqlite", null)))
        {
            await Eventually(async () => (job = (await LocalIsland.StatusAsync(first.Node.Http)).Job) is { Phase: "completed" }, TimeSpan.FromSeconds(120), "the job completes");
        }
        // An operator restores an older backup of the store: the final checkpoint the journal names is gone.
        var final = Path.Combine(store, "reopen", "checkpoints", job!.LastCheckpoint!.Checkpoint);
        Assert.Equal(100, job.LastCheckpoint.Step);
        Directory.Delete(final, recursive: true);
        output.WriteLine($"deleted {final}");

        await using var second = new NodeScope(await LocalIsland.StartNodeAsync("reopen", FreePort(), null, store, config, "sqlite", null));
        await Eventually(async () => (job = (await LocalIsland.StatusAsync(second.Node.Http)).Job) is { Phase: "training" or "completed", ResumedFromStep: not null },
            TimeSpan.FromSeconds(60), "the job reopens and resumes");
        output.WriteLine($"{job!.Phase} from step {job.ResumedFromStep}: {job.LastError}; rejected: {string.Join("; ", job.RejectedCheckpoints)}");
        Assert.Equal(75, job.ResumedFromStep);
        Assert.Contains(job.RejectedCheckpoints, r => r.StartsWith(Path.GetFileName(final), StringComparison.Ordinal) && r.Contains("missing", StringComparison.Ordinal));
        await Eventually(async () => (job = (await LocalIsland.StatusAsync(second.Node.Http)).Job) is { Phase: "completed" }, TimeSpan.FromSeconds(120), "the reopened job completes");
        Assert.Equal(100, job!.LastCheckpoint!.Step);
        CheckpointStore.VerifyReference(Path.Combine(store, "reopen", "checkpoints", job.LastCheckpoint.Checkpoint), job.LastCheckpoint.ManifestSha256);
        Assert.Equal(100, PublishedCheckpoint.ReadVerified(Path.Combine(store, "reopen")).Published.Step);
    }

    [Fact]
    public async Task A_journal_that_is_down_at_start_up_is_retried_with_backoff_and_reported_then_training_starts_when_it_is_back()
    {
        var (data, partitions) = await DatasetAsync();
        var store = TempDir("journal-down");
        var config = Path.Combine(store, "node.json");
        await File.WriteAllTextAsync(config, NodeConfig(data, partitions, steps: 60));
        var missing = Path.Combine(store, "not-mounted-yet");
        var journal = $"Data Source={Path.Combine(missing, "journal.db")}";

        await using var node = new NodeScope(await LocalIsland.StartNodeAsync("journal-down", FreePort(), null, store, config, "sqlite", journal));
        JobStatus? job = null;
        await Eventually(async () => (job = (await LocalIsland.StatusAsync(node.Node.Http)).Job) is { Phase: "waiting-for-journal", WorkerRestarts: >= 2 },
            TimeSpan.FromSeconds(90), "the job reports the journal as down after retrying");
        output.WriteLine($"{job!.Phase}: {job.LastError}");
        Assert.Contains("attempt", job.LastError);
        using (var http = new HttpClient())
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync(node.Node.Http + "/health/live")).StatusCode);
        }

        Directory.CreateDirectory(missing);
        await Eventually(async () => (job = (await LocalIsland.StatusAsync(node.Node.Http)).Job) is { Phase: "completed" },
            TimeSpan.FromSeconds(120), "the job runs once the journal is reachable");
        Assert.Equal(60, job!.LastCheckpoint!.Step);
    }

    [Fact]
    public async Task A_graceful_stop_commits_a_checkpoint_of_the_current_step_before_the_node_leaves()
    {
        var (data, partitions) = await DatasetAsync();
        var store = TempDir("graceful");
        var config = Path.Combine(store, "node.json");
        await File.WriteAllTextAsync(config, NodeConfig(data, partitions, steps: 5000, ("training:checkpointEvery", 1000)));
        var node = await LocalIsland.StartNodeAsync("graceful", FreePort(), null, store, config, "sqlite", null);
        JobStatus? job = null;
        await Eventually(async () => (job = (await LocalIsland.StatusAsync(node.Http)).Job) is { Phase: "training", Step: >= 40 },
            TimeSpan.FromSeconds(120), "training passes step 40");
        Assert.Null(job!.LastCheckpoint);
        await node.StopGracefullyAsync();
        await node.App.DisposeAsync();

        var (published, directory) = PublishedCheckpoint.ReadVerified(Path.Combine(store, "graceful"));
        output.WriteLine($"stopped after step {job.Step}; committed and published step {published.Step}");
        Assert.True(published.Step >= job.Step, $"the checkpoint at stop (step {published.Step}) predates the step seen before stopping ({job.Step})");
        Assert.NotEqual(0, published.Step % 1000);
        CheckpointStore.Verify(directory);
    }

    [Fact]
    public async Task A_router_island_trains_the_router_to_completion_and_publishes_it()
    {
        var (data, partitions) = await DatasetAsync();
        var store = TempDir("router");
        var config = Path.Combine(store, "node.json");
        await File.WriteAllTextAsync(config, ConfigurationJson.From([("islands:chunkSteps", 10), ("islands:training:dataDirectory", data),
            ("islands:training:partitionsFile", partitions), ("islands:training:expertCount", 4), ("islands:training:hidden", 64),
            ("islands:training:steps", 60), ("islands:training:batchSize", 64), ("islands:training:checkpointEvery", 30)]));
        await using var node = new NodeScope(await LocalIsland.StartNodeAsync("router", FreePort(), null, store, config, "sqlite", null, job: "router"));
        JobStatus? job = null;
        await Eventually(async () => (job = (await LocalIsland.StatusAsync(node.Node.Http)).Job) is { Phase: "completed" }, TimeSpan.FromSeconds(120), "the router job completes");
        Assert.Equal("router", job!.Job);
        Assert.Equal(60, job.LastCheckpoint!.Step);
        var (published, directory) = PublishedCheckpoint.ReadVerified(Path.Combine(store, "router"));
        Assert.Equal("router", published.Job);
        Assert.True(File.Exists(Path.Combine(directory, Islands.Diffusion.Routing.RouterTrainer.WeightsFile)));
    }

    private sealed class NodeScope(LocalNode node) : IAsyncDisposable
    {
        public LocalNode Node { get; } = node;

        public async ValueTask DisposeAsync()
        {
            if (Node.Alive) await Node.KillAsync();
            await Node.App.DisposeAsync();
        }
    }
}
