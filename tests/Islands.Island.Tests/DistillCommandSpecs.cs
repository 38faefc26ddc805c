using System.Text.Json;
using Islands.Cli;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace Islands.Island.Tests;

/// <summary><c>islands distill class</c> on the experts and router a store publishes: a run, its resume, and bad input.</summary>
[Collection("islands")]
public sealed class DistillCommandSpecs
{
    private static async Task<(int Code, string Out, string Err)> Cli(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var code = await IslandsCli.RunAsync(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public async Task Should_distill_images_with_the_stores_ensemble_freeze_its_config_and_resume_a_longer_run()
    {
        var store = await ServingTestStore.StoreAsync();
        var run = Path.Combine(IslandTestEnvironment.TempDir("distill"), "bridge");
        string[] common = ["distill", "class", "--store", store, "--class", "Sneaker", "--mode", "bridge", "--source-class", "Sandal", "--plain-source", "--count", "4",
            "--guidance", "7.5", "--lr", "0.05", "--checkpoint-every", "10", "--evaluator-epochs", "1", "--out", run, "--json"];
        var first = await Cli([.. common, "--steps", "30", "--switch-step", "15"]);
        Assert.True(first.Code == 0, first.Err);
        var summary = JsonDocument.Parse(first.Out).RootElement;
        Assert.Equal(30, summary.GetProperty("step").GetInt64());
        Assert.False(summary.GetProperty("resumed").GetBoolean());
        Assert.Equal("bridge", summary.GetProperty("method").GetString());
        Assert.True(double.IsFinite(summary.GetProperty("finalDirection").GetDouble()));
        Assert.Equal(4, summary.GetProperty("distilled").GetProperty("count").GetInt32());
        Assert.True(summary.GetProperty("real").GetProperty("count").GetInt32() > 0, "the class's real test images are read for comparison");
        var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "config.json"))).RootElement;
        Assert.Equal("bridge", config.GetProperty("job").GetString());
        Assert.Equal(7, config.GetProperty("targetClass").GetInt32());
        Assert.Equal(5, config.GetProperty("sourceClass").GetInt32());

        // The grid holds 2 x 2 images of 28 x 28 that are neither constant nor the grey they started from.
        using (var grid = Image.Load<L8>(Path.Combine(run, "grid.png")))
        {
            Assert.True(grid.Width >= 2 * 28 && grid.Height >= 2 * 28, $"{grid.Width} x {grid.Height}");
            var values = new List<byte>();
            grid.ProcessPixelRows(rows =>
            {
                for (var y = 0; y < rows.Height; y++)
                    foreach (var p in rows.GetRowSpan(y)) values.Add(p.PackedValue);
            });
            var mean = values.Average(v => (double)v);
            var sd = Math.Sqrt(values.Average(v => (v - mean) * (v - mean)));
            Assert.True(sd > 10, $"pixel standard deviation {sd:F1}: the images did not move from their grey start");
        }

        // The same settings with more steps resume from the last checkpoint; other settings are refused, naming --out.
        // Without --switch-step the resumed bridge keeps the switch it started with (15), not the new --steps' half.
        var longer = await Cli([.. common, "--steps", "40"]);
        Assert.True(longer.Code == 0, longer.Err);
        var resumed = JsonDocument.Parse(longer.Out).RootElement;
        Assert.True(resumed.GetProperty("resumed").GetBoolean());
        Assert.Equal(40, resumed.GetProperty("step").GetInt64());
        var other = await Cli([.. common.Select(a => a == "7.5" ? "3" : a), "--steps", "40", "--switch-step", "15"]);
        Assert.Equal(2, other.Code);
        Assert.Contains("--out:", other.Err);
    }

    [Fact]
    public async Task Should_take_the_degraded_condition_of_the_experts_as_the_bridges_default_source()
    {
        // The store's experts learned "degraded, class c" (ServingTestStore trains them with DegradedCondition).
        var store = await ServingTestStore.StoreAsync();
        var run = Path.Combine(IslandTestEnvironment.TempDir("distill-degraded"), "bridge");
        var result = await Cli("distill", "class", "--store", store, "--class", "Trouser", "--mode", "bridge", "--count", "2", "--steps", "12",
            "--switch-step", "4", "--guidance", "7.5", "--checkpoint-every", "12", "--evaluator-epochs", "1", "--out", run, "--json");
        Assert.True(result.Code == 0, result.Err);
        var summary = JsonDocument.Parse(result.Out).RootElement;
        Assert.True(summary.GetProperty("degradedSource").GetBoolean());
        Assert.Equal(12, summary.GetProperty("step").GetInt64());
        Assert.True(double.IsFinite(summary.GetProperty("finalDirection").GetDouble()) && summary.GetProperty("finalDirection").GetDouble() > 0);
    }

    [Fact]
    public async Task Should_translate_test_images_of_one_class_to_another_and_compare_with_sdedit_at_each_strength()
    {
        var store = await ServingTestStore.StoreAsync();
        var run = Path.Combine(IslandTestEnvironment.TempDir("distill-translate"), "run");
        var result = await Cli("distill", "translate", "--store", store, "--from", "Sandal", "--to", "Sneaker", "--mode", "bridge", "--count", "4",
            "--steps", "30", "--sdedit", "0.3,0.7", "--no-evaluate", "--out", run, "--json");
        Assert.True(result.Code == 0, result.Err);
        var summary = JsonDocument.Parse(result.Out).RootElement;
        Assert.Equal("translate", summary.GetProperty("task").GetString());
        var rows = summary.GetProperty("translation").EnumerateArray().ToList();
        Assert.Equal(["distilled", "sdedit", "sdedit"], rows.Select(r => r.GetProperty("method").GetString()));
        Assert.All(rows, r => Assert.True(File.Exists(r.GetProperty("grid").GetString())));
        Assert.All(rows, r => Assert.InRange(r.GetProperty("ssim").GetDouble(), -1, 1));
        Assert.True(File.Exists(Path.Combine(run, "inputs.png")));
        var frozen = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "config.json"))).RootElement;
        Assert.Equal(5, frozen.GetProperty("inputClass").GetInt32());
        Assert.Equal(JsonValueKind.Null, frozen.GetProperty("sourceClass").ValueKind);
        // SDEdit keeps less of its input the stronger it is; the distillation, with t capped at 0.5, keeps more than the strongest.
        var (weak, strong) = (rows[1], rows[2]);
        Assert.True(strong.GetProperty("rmse").GetDouble() > weak.GetProperty("rmse").GetDouble());
        Assert.True(rows[0].GetProperty("ssim").GetDouble() > strong.GetProperty("ssim").GetDouble());
        Assert.True(rows[0].GetProperty("rmse").GetDouble() > 0, "the translation moved its inputs");
    }

    [Fact]
    public async Task Should_optimise_an_illusion_whose_turned_view_has_its_own_class()
    {
        var store = await ServingTestStore.StoreAsync();
        var run = Path.Combine(IslandTestEnvironment.TempDir("distill-illusion"), "run");
        var result = await Cli("distill", "illusion", "--store", store, "--class", "Trouser", "--turned", "Bag", "--mode", "bridge", "--count", "2",
            "--steps", "10", "--no-evaluate", "--out", run, "--json");
        Assert.True(result.Code == 0, result.Err);
        var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "config.json"))).RootElement;
        Assert.Equal("illusion", config.GetProperty("task").GetString());
        Assert.Equal(8, config.GetProperty("illusionClass").GetInt32());
        Assert.True(double.IsFinite(JsonDocument.Parse(result.Out).RootElement.GetProperty("finalDirection").GetDouble()));
    }

    [Fact]
    public async Task Bench_distill_prints_the_cost_of_a_distillation_step_against_a_guided_sampling_step_measured_in_one_run()
    {
        var store = await ServingTestStore.StoreAsync();
        var result = await Cli("bench", "distill", "--store", store, "--count", "2", "--steps", "2", "--rounds", "2", "--json");
        Assert.True(result.Code == 0, result.Err);
        var bench = JsonDocument.Parse(result.Out).RootElement;
        Assert.Equal(2, bench.GetProperty("rounds").GetArrayLength());
        foreach (var name in new[] { "samplingStepsPerSecond", "sdsStepsPerSecond", "bridgeStepsPerSecond", "medianSdsOverSampling", "medianBridgeOverSds" })
            Assert.True(bench.GetProperty(name).GetDouble() is var v && double.IsFinite(v) && v > 0, $"{name} {bench.GetProperty(name)}");
    }

    [Theory]
    [InlineData("--class Unicorn", "--class")]
    [InlineData("--class 12", "--class")]
    [InlineData("--mode nfsd --plain-source", "--source-class")]
    [InlineData("--guidance -1", "--guidance")]
    [InlineData("--count 0", "--count")]
    [InlineData("--t-min 0", "--t-min")]
    [InlineData("--t-min 0.6", "--t-max")]
    public async Task Should_refuse_bad_input_with_a_usage_error_naming_the_option(string extra, string named)
    {
        var store = await ServingTestStore.StoreAsync();
        var result = await Cli(["distill", "class", "--store", store, "--out", Path.Combine(IslandTestEnvironment.TempDir("distill-bad"), "run"),
            "--steps", "5", "--t-max", "0.5", .. extra.StartsWith("--class", StringComparison.Ordinal) ? [] : new[] { "--class", "Sneaker" },
            .. extra.Split(' ')]);
        Assert.Equal(2, result.Code);
        Assert.Contains($"islands: error: {named}", result.Err);
    }

    [Fact]
    public async Task Should_run_the_sds_bridge_experiment_quickly_write_its_report_resume_without_recomputing_and_refuse_other_options()
    {
        var store = await ServingTestStore.StoreAsync();
        var output = IslandTestEnvironment.TempDir("sds-bridge");
        string[] args = ["experiment", "sds-bridge", "--store", store, "--quick", "--seeds", "1", "--classes", "Sneaker", "--out", output, "--json"];
        var first = await Cli(args);
        Assert.True(first.Code == 0, first.Err);
        var report = File.ReadAllText(Path.Combine(output, "report", "report.md"));
        foreach (var row in new[] { "| sampling |", "| sds |", "| nfsd |", "| bridge |", "| real test images |", "| sdedit | strength 0.50 |", "| bridge | t ≤ 0.50 |" })
            Assert.Contains(row, report);
        Assert.Contains("FID: the bridge", report);
        Assert.Contains("Cost: a bridge step took", report);
        Assert.True(File.Exists(Path.Combine(output, "report", "translation.png")));
        Assert.True(File.Exists(Path.Combine(output, "report", "grids", "bridge-7.gif")));
        var stages = Directory.GetFiles(Path.Combine(output, "stages"), "*.json");
        Assert.Equal(4 + 2, stages.Length);
        foreach (var file in stages.Where(f => Path.GetFileName(f).StartsWith("class-", StringComparison.Ordinal)))
        {
            var outcome = JsonDocument.Parse(File.ReadAllText(file)).RootElement;
            foreach (var metric in new[] { "targetProbability", "fid", "kid", "saturation", "laplacianVariance", "secondsPerStep" })
                Assert.True(double.IsFinite(outcome.GetProperty(metric).GetDouble()), $"{Path.GetFileName(file)}: {metric} is not finite");
            var p = outcome.GetProperty("targetProbability").GetDouble();
            Assert.InRange(p, 0, 1);
            Assert.True(outcome.GetProperty("secondsPerStep").GetDouble() > 0, $"{Path.GetFileName(file)}: no time measured");
        }
        var written = stages.ToDictionary(f => f, File.GetLastWriteTimeUtc);

        var again = await Cli(args);
        Assert.True(again.Code == 0, again.Err);
        Assert.All(written, w => Assert.Equal(w.Value, File.GetLastWriteTimeUtc(w.Key)));

        var other = await Cli(["experiment", "sds-bridge", "--store", store, "--quick", "--seeds", "1", "--classes", "Trouser", "--out", output]);
        Assert.NotEqual(0, other.Code);
        Assert.Contains("--out", other.Err);
    }
}
