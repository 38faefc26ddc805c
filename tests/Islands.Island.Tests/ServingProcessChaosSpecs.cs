using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using Islands.Hosting;
using Xunit.Abstractions;
using static Islands.Island.Tests.IslandTestEnvironment;

namespace Islands.Island.Tests;

/// <summary>Real `islands serve` processes on loopback, killed with SIGKILL: what the serving cluster survives.</summary>
[Collection("islands")]
public sealed class NodeProcessChaosSpecs(ITestOutputHelper output)
{
    [Fact]
    public async Task Two_of_three_serving_nodes_killed_at_once_leave_the_third_serving_with_the_lease_and_both_rejoin_it()
    {
        var store = await ServingTestStore.CopyAsync();
        var lease = await CreateDatabaseAsync("serving-lease");
        var logs = TempDir("serving-processes");
        var nodes = Enumerable.Range(0, 3).Select(i => new NodeProcess(FreePort(), FreePort(), Path.Combine(logs, $"serving-{i}.log"))).ToList();
        var contacts = string.Join(",", nodes.Select(n => n.ContactPoint));
        try
        {
            foreach (var node in nodes) Start(node, store, contacts, lease);
            await OneClusterAsync(nodes, "after start-up");
            foreach (var node in nodes) await GenerateAsync(node, "before the kills");

            // The two oldest go together: keep-majority would down the survivor (one of three is no majority), and the
            // oldest, the lowest address, is the one keep-majority would keep in an even split.
            var victims = nodes.Take(2).ToList();
            var survivor = nodes[2];
            foreach (var victim in victims) victim.Process!.Kill();
            foreach (var victim in victims) await victim.Process!.WaitForExitAsync();
            var killed = Stopwatch.StartNew();
            // The split-brain resolver decides (the lease acquired), then downs both: until then they are only unreachable.
            await Eventually(async () =>
            {
                if (!survivor.Alive) throw new InvalidOperationException($"the survivor exited (code {survivor.Process!.ExitCode}); see {survivor.Log}");
                return survivor.LogContains("lease serving-main-split-brain acquired") && survivor.LogContains("Leader is removing")
                    && (await SeedNodesAsync(survivor)).Members.SequenceEqual([Address(survivor)]);
            }, TimeSpan.FromSeconds(90), "the survivor acquires the split-brain lease, downs both killed nodes and is the whole cluster");
            output.WriteLine($"the survivor downed both and is alone in its cluster {killed.Elapsed.TotalSeconds:F1} s after the kills");
            // Its sharding takes over the experts the dead nodes hosted: a generation with every expert answering.
            await GenerateAsync(survivor, "with both others dead");
            Assert.True(survivor.Alive);

            foreach (var victim in victims) Start(victim, store, contacts, lease);
            await OneClusterAsync(nodes, "after both restarted");
            foreach (var node in nodes) await GenerateAsync(node, "after both restarted");
            // Only the very first start formed a cluster: the restarted nodes joined the survivor's.
            Assert.Equal(1, nodes.Count(n => n.LogContains("is JOINING itself")));
        }
        finally
        {
            foreach (var node in nodes.Where(n => n.Alive)) node.Process!.Kill(entireProcessTree: true);
            foreach (var node in nodes) output.WriteLine($"--- {node.Log}: {(File.Exists(node.Log) ? new FileInfo(node.Log).Length : 0)} bytes");
        }
    }

    private static string Address(NodeProcess node) => node.AkkaAddress("serving-main");

    private static async Task<SeedNodesAnswer> SeedNodesAsync(NodeProcess node)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        return (await http.GetFromJsonAsync<SeedNodesAnswer>(node.Http + ClusterFormation.Route, Diffusion.IO.Json.Options))!;
    }

    /// <summary>Every node is in one cluster with all the others (each lists the same members, all three).</summary>
    private static async Task OneClusterAsync(List<NodeProcess> nodes, string when)
    {
        var expected = nodes.Select(Address).Order(StringComparer.Ordinal).ToList();
        await Eventually(async () =>
        {
            foreach (var node in nodes)
            {
                if (!node.Alive) throw new InvalidOperationException($"{Address(node)} exited {when}; see {node.Log}");
                if (!(await SeedNodesAsync(node)).Members.Order(StringComparer.Ordinal).SequenceEqual(expected)) return false;
            }
            return true;
        }, TimeSpan.FromSeconds(120), $"all {nodes.Count} serving nodes are one cluster {when}");
    }

    /// <summary>A generation through this node's API answered by all four experts, with finite, non-constant pixels.</summary>
    private static async Task GenerateAsync(NodeProcess node, string when)
    {
        using var http = ServingTestStore.Client(node.Http);
        JsonElement body = default;
        await Eventually(async () =>
        {
            using var response = await ServingTestStore.PostAsync(http, new { count = 4, steps = 4, strategy = "full", seed = 7, format = "json" });
            if (!response.IsSuccessStatusCode) return false;
            body = await response.Content.ReadFromJsonAsync<JsonElement>();
            return body.GetProperty("leftOutExperts").GetArrayLength() == 0;
        }, TimeSpan.FromSeconds(90), $"{Address(node)} serves a generation from all four experts {when}");
        Assert.Equal(0, body.GetProperty("nonFiniteImages").GetInt32());
        foreach (var image in body.GetProperty("images").EnumerateArray())
        {
            var (pixels, _, _) = Diffusion.Imaging.ImageGrid.DecodeGrey(Convert.FromBase64String(image.GetString()!));
            Assert.True(pixels.Max() - pixels.Min() > 25, $"an image served {when} is nearly constant");
        }
    }

    private static void Start(NodeProcess node, string store, string contacts, string lease) => node.Start(
        [
            "serve", "--store", store, "--port", node.Port.ToString(CultureInfo.InvariantCulture),
            "--http-port", node.HttpPort.ToString(CultureInfo.InvariantCulture), "--contact-points", contacts, "--threads", "1",
        ],
        new Dictionary<string, string>
        {
            ["ISLANDS_API_KEYS"] = ServingTestStore.ApiKey,
            ["ISLANDS_SPLIT_BRAIN_STABLE_AFTER"] = "5s",
            ["ISLANDS_SPLIT_BRAIN_LEASE_CONNECTION_STRING"] = lease,
        });
}
