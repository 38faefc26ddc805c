using Islands.Hosting.Configuration;
using System.Net;

namespace Islands.Island.Tests;

/// <summary>Akka.Hosting's liveness and readiness checks behind /health: live at once, ready only once the node has joined.</summary>
[Collection("islands")]
public sealed class NodeHealthSpecs
{
    [Fact]
    public async Task Should_be_live_but_not_ready_while_its_only_seed_is_unreachable_and_ready_once_a_cluster_forms()
    {
        var store = await ServingTestStore.StoreAsync();
        var name = "h" + Guid.NewGuid().ToString("N")[..8];
        var configFile = Path.Combine(IslandTestEnvironment.TempDir("health"), "serving.json");
        await File.WriteAllTextAsync(configFile, ConfigurationJson.From([("islands:serving:name", name), ("islands:serving:http:port", 0),
            ("islands:serving:apiKeys", new[] { ServingTestStore.ApiKey }),
            ("islands:serving:results", Path.Combine(Path.GetDirectoryName(configFile)!, "results"))]));
        var deadSeed = $"akka.tcp://serving-{name}@127.0.0.1:{IslandTestEnvironment.FreePort()}";
        var port = IslandTestEnvironment.FreePort();
        var lonely = await LocalServing.StartNodeAsync(configFile, store, port, deadSeed);
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri(lonely.Http) };
            await Task.Delay(TimeSpan.FromSeconds(3));
            Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health/live")).StatusCode);
            using var notReady = await http.GetAsync("/health/ready");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, notReady.StatusCode);
            Assert.Equal("Unhealthy", await notReady.Content.ReadAsStringAsync());

            // A node that seeds itself forms a cluster at once: ready.
            var self = await LocalServing.StartNodeAsync(configFile, store, IslandTestEnvironment.FreePort(), null);
            try
            {
                using var ready = new HttpClient { BaseAddress = new Uri(self.Http) };
                await IslandTestEnvironment.Eventually(async () => (await ready.GetAsync("/health/ready")).StatusCode == HttpStatusCode.OK,
                    TimeSpan.FromSeconds(30), "a self-seeded node becomes ready");
            }
            finally
            {
                await self.KillAsync();
            }
        }
        finally
        {
            await lonely.KillAsync();
        }
    }
}
