using Islands.Hosting.Configuration;
using Islands.Cli;

namespace Islands.Island.Tests;

/// <summary>The generate client's standard resilience: it retries, with the same Idempotency-Key, until the API answers.</summary>
[Collection("islands")]
public sealed class GenerationClientSpecs
{
    [Fact]
    public async Task Should_retry_a_node_that_is_not_listening_yet_and_write_the_grid_once_it_answers()
    {
        var store = await ServingTestStore.StoreAsync();
        var work = IslandTestEnvironment.TempDir("client-retry");
        var httpPort = IslandTestEnvironment.FreePort();
        var configFile = Path.Combine(work, "serving.json");
        await File.WriteAllTextAsync(configFile, ConfigurationJson.From([("islands:serving:name", $"retry{httpPort}"),
            ("islands:serving:http:port", httpPort), ("islands:serving:apiKeys", new[] { ServingTestStore.ApiKey }),
            ("islands:serving:results", Path.Combine(work, "results"))]));
        var output = Path.Combine(work, "grid.png");
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        Environment.SetEnvironmentVariable("ISLANDS_API_KEY", ServingTestStore.ApiKey);
        LocalServingNode? node = null;
        try
        {
            var generate = IslandsCli.RunAsync(["generate", "--url", $"http://127.0.0.1:{httpPort}", "--count", "2", "--steps", "4", "--out", output],
                stdout, stderr);
            await Task.Delay(TimeSpan.FromSeconds(1.5));
            Assert.False(generate.IsCompleted, "the client gave up while the node was not listening");
            node = await LocalServing.StartNodeAsync(configFile, store, IslandTestEnvironment.FreePort(), null);
            Assert.True(await generate == 0, stderr.ToString());
            Assert.Contains("retrying in", stderr.ToString());
            Assert.Contains("wrote 2 images", stdout.ToString());
            Assert.True(new FileInfo(output).Length > 100);
        }
        finally
        {
            Environment.SetEnvironmentVariable("ISLANDS_API_KEY", null);
            if (node is not null) await node.KillAsync();
        }
    }
}
