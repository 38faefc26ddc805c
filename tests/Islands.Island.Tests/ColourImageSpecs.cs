using System.Net;
using System.Text.Json;
using Islands.Cli;
using Islands.Diffusion.Imaging;
using Islands.Diffusion.IO;

namespace Islands.Island.Tests;

/// <summary>
/// Images of C channels and H × W pixels end to end: a colour, non-square dataset (3 × 24 × 32) imported, partitioned,
/// trained as two experts and a router through the CLI, sampled offline, published, served over HTTP and fetched with
/// the generate client. Every image must be in its class's colour: the classes of synthetic-rgb are colours.
/// </summary>
[Collection("islands")]
public sealed class ColourImageSpecs
{
    private static readonly string[] ClassChannels = ["R", "G", "B", "RG", "RB", "GB"];

    /// <summary>Whether an image [3, H, W] in [-1, 1] has its class's colour: its bright pixels' class channels beat the others.</summary>
    private static string? ColourProblem(ReadOnlySpan<float> image, int plane, int cls)
    {
        var sums = new double[3];
        var bright = 0;
        for (var j = 0; j < plane; j++)
        {
            if (Math.Max(image[j], Math.Max(image[plane + j], image[2 * plane + j])) <= 0) continue;
            bright++;
            for (var c = 0; c < 3; c++) sums[c] += image[c * plane + j];
        }
        if (bright < 10) return $"class {cls}: only {bright} bright pixels";
        var expected = ClassChannels[cls].Select(ch => "RGB".IndexOf(ch)).ToHashSet();
        var low = expected.Min(c => sums[c]);
        var high = Enumerable.Range(0, 3).Where(c => !expected.Contains(c)).Max(c => sums[c]);
        return low > high ? null : $"class {cls} ({ClassChannels[cls]}): channel means {string.Join(", ", sums.Select(s => (s / bright).ToString("F2")))}";
    }

    private static async Task Cli(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = await IslandsCli.RunAsync([.. args, "--threads", "2"], stdout, stderr);
        Assert.True(code == 0, $"islands {string.Join(' ', args)}: {stderr}");
    }

    [Fact]
    public async Task Should_train_sample_serve_and_fetch_colour_non_square_images_in_their_class_colours()
    {
        var work = IslandTestEnvironment.TempDir("colour");
        string Path_(string name) => Path.Combine(work, name);
        await Cli("data", "import", "--source", "synthetic-rgb", "--out", Path_("data"));
        var manifest = JsonDocument.Parse(File.ReadAllText(Path.Combine(Path_("data"), "manifest.json"))).RootElement;
        Assert.Equal((3, 24, 32), (manifest.GetProperty("channels").GetInt32(), manifest.GetProperty("height").GetInt32(), manifest.GetProperty("width").GetInt32()));
        await Cli("data", "partition", "--data", Path_("data"), "--k", "2", "--out", Path_("p.json"));
        var store = Path_("store");
        for (var k = 0; k < 2; k++)
        {
            var run = Path.Combine(store, $"expert-{k}");
            await Cli("train", "expert", "--data", Path_("data"), "--partitions", Path_("p.json"), "--expert", $"{k}", "--steps", "200", "--batch", "32",
                "--checkpoint-every", "100", "--out", run);
            var model = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "config.json"))).RootElement.GetProperty("model");
            Assert.Equal((3, 24, 32), (model.GetProperty("imageChannels").GetInt32(), model.GetProperty("imageSize").GetInt32(), model.GetProperty("imageWidth").GetInt32()));
            ServingTestStore.Publish(run, $"expert:{k}");
        }
        var router = Path.Combine(store, "router");
        await Cli("train", "router", "--data", Path_("data"), "--partitions", Path_("p.json"), "--steps", "150", "--out", router);
        ServingTestStore.Publish(router, "router");

        // Offline: the routed ensemble, every class twice.
        await Cli("sample", "--model", Path.Combine(store, "expert-0"), "--model", Path.Combine(store, "expert-1"), "--router", router,
            "--count", "12", "--class", "all", "--out", Path_("offline.png"), "--raw", Path_("offline.npy"));
        var (values, shape) = Npy.ReadFloat32(Path_("offline.npy"));
        Assert.Equal([12L, 3, 24, 32], shape);
        Assert.All(values, v => Assert.True(float.IsFinite(v)));
        var problems = Enumerable.Range(0, 12).Select(i => ColourProblem(values.AsSpan(i * 3 * 768, 3 * 768), 768, i % 6)).Where(p => p is not null).ToList();
        Assert.True(problems.Count == 0, string.Join("; ", problems));
        var (grid, gridWidth, gridHeight) = ImageGrid.DecodeRgb(File.ReadAllBytes(Path_("offline.png")));
        Assert.Equal(((4 * (32 + 2) + 2) * 2, (3 * (24 + 2) + 2) * 2), (gridWidth, gridHeight));
        Assert.NotEqual(grid[..(grid.Length / 3)], grid[(grid.Length / 3)..(2 * grid.Length / 3)]);

        // Served: the same images' shape and colours through HTTP, and the generate client's grid.
        await using var cluster = await LocalServing.StartAsync(1, store, name: "serving-colour");
        using var http = ServingTestStore.Client(cluster.Nodes[0].Http);
        using var response = await ServingTestStore.PostAsync(http, new { count = 4, @class = "magenta cross", steps = 20, sampler = "heun", seed = 3, format = "json" });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal((3, 24, 32), (body.GetProperty("channels").GetInt32(), body.GetProperty("height").GetInt32(), body.GetProperty("width").GetInt32()));
        foreach (var png in body.GetProperty("images").EnumerateArray())
        {
            var (pixels, width, height) = ImageGrid.DecodeRgb(Convert.FromBase64String(png.GetString()!));
            Assert.Equal((32, 24), (width, height));
            var floats = pixels.Select(p => p / 127.5f - 1).ToArray();
            Assert.Null(ColourProblem(floats, 768, 4));
        }

        var output = Path_("served.png");
        Environment.SetEnvironmentVariable("ISLANDS_API_KEY", ServingTestStore.ApiKey);
        try
        {
            await Cli("generate", "--url", cluster.Nodes[0].Http, "--count", "4", "--class", "0", "--steps", "10", "--out", output);
        }
        finally
        {
            Environment.SetEnvironmentVariable("ISLANDS_API_KEY", null);
        }
        var (served, servedWidth, servedHeight) = ImageGrid.DecodeRgb(File.ReadAllBytes(output));
        Assert.Equal(((2 * (32 + 2) + 2) * 2, (2 * (24 + 2) + 2) * 2), (servedWidth, servedHeight));
        var plane = servedWidth * servedHeight;
        Assert.True(served[..plane].Select(b => (int)b).Sum() > served[plane..(2 * plane)].Select(b => (int)b).Sum(), "red images' grid is not redder than green");
    }
}
