using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Serving;

namespace Islands.Diffusion.Tests;

public sealed class PublishedModelSpecs
{
    private static CheckpointRef Publish(string store, string island, string job, long step)
    {
        var run = Path.Combine(store, island);
        var committed = new CheckpointStore(run).Commit(step, 0.5f, dir =>
        {
            File.WriteAllBytes(Path.Combine(dir, "model.bin"), Enumerable.Range(0, 4096).Select(i => (byte)(i * 7 + step)).ToArray());
            File.WriteAllText(Path.Combine(dir, "state.json"), $"{{\"step\":{step}}}");
        });
        PublishedCheckpoint.Publish(run, job, island, committed);
        return committed;
    }

    [Fact]
    public void Should_list_one_verified_expert_per_partition_and_the_router_and_refuse_what_does_not_verify()
    {
        var store = TestData.TempDir("published");
        Publish(store, "island-0", "expert:0", 100);
        Publish(store, "island-1", "expert:1", 200);
        Thread.Sleep(20);
        Publish(store, "island-1b", "expert:1", 300);
        Publish(store, "router", "router", 50);
        var corrupt = Publish(store, "island-2", "expert:2", 100);
        var model = Path.Combine(corrupt.Directory, "model.bin");
        var bytes = File.ReadAllBytes(model);
        bytes[10] ^= 0x01;
        File.WriteAllBytes(model, bytes);
        Directory.CreateDirectory(Path.Combine(store, "not-an-island"));

        var scan = PublishedModels.Scan(store);

        Assert.Equal([0, 1], scan.Experts.Select(e => e.Expert!.Value));
        Assert.Equal("island-1b", scan.Experts[1].Island);
        Assert.Equal(300, scan.Experts[1].Step);
        Assert.Equal("router", scan.Router!.Job);
        Assert.Contains(scan.Refused, r => r.Contains(model, StringComparison.Ordinal) && r.Contains("SHA-256", StringComparison.Ordinal));
        Assert.Contains(scan.Refused, r => r.Contains("island-1", StringComparison.Ordinal) && r.Contains("newer", StringComparison.Ordinal));
        Assert.Equal(2, scan.Refused.Count);
    }

    [Fact]
    public void Should_name_a_missing_store()
    {
        var error = Assert.Throws<ConfigException>(() => PublishedModels.Scan("/nonexistent/store"));
        Assert.Contains("/nonexistent/store", error.Message);
    }
}
