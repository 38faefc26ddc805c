using SixLabors.ImageSharp;

namespace Islands.Cli.Tests;

/// <summary>The README's walk-through, shrunk: import, partition, train an expert, resume, sample, evaluate, benchmark.</summary>
public sealed class PipelineSpecs
{
    [Fact]
    public async Task Should_import_partition_train_resume_sample_and_evaluate()
    {
        var data = await CliRunner.FashionMnistAsync();
        var work = CliRunner.TempDir("pipeline");
        var partitions = Path.Combine(work, "p4.json");

        var partition = await CliRunner.RunAsync("data", "partition", "--data", data, "--k", "4", "--fine", "128", "--out", partitions, "--json");
        Assert.True(partition.ExitCode == 0, partition.Stderr);
        var sizes = partition.Json.GetProperty("sizes").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        Assert.Equal(60000, sizes.Sum());
        Assert.All(sizes, s => Assert.InRange(s, 60000 / 4 * 0.85 - 1, 60000 / 4 * 1.05 + 1));

        var run = Path.Combine(work, "expert1");
        string[] train = ["train", "expert", "--data", data, "--partitions", partitions, "--expert", "1", "--batch", "16", "--base-channels", "8",
            "--checkpoint-every", "10", "--out", run, "--json"];
        var first = await CliRunner.RunAsync([.. train, "--steps", "20"]);
        Assert.True(first.ExitCode == 0, first.Stderr);
        Assert.Equal(20, first.Json.GetProperty("step").GetInt64());
        Assert.True(File.Exists(Path.Combine(run, "config.json")));
        Assert.True(Directory.Exists(Path.Combine(run, "checkpoints", "step-000000020")));

        // Rerunning with more steps resumes from the committed checkpoint instead of starting over.
        var second = await CliRunner.RunAsync([.. train, "--steps", "30"]);
        Assert.True(second.ExitCode == 0, second.Stderr);
        Assert.True(second.Json.GetProperty("resumed").GetBoolean());
        Assert.Equal(20, second.Json.GetProperty("resumedFromStep").GetInt64());
        Assert.Equal(30, second.Json.GetProperty("step").GetInt64());

        // A changed setting is refused, not silently mixed into the run.
        var changed = await CliRunner.RunAsync([.. train.Select(a => a == "16" ? "32" : a), "--steps", "30"]);
        Assert.Equal(2, changed.ExitCode);
        Assert.Contains("--out:", changed.Stderr);
        Assert.Contains("batchSize (", changed.Stderr);

        var grid = Path.Combine(work, "grid.png");
        var raw = Path.Combine(work, "samples.npy");
        var sample = await CliRunner.RunAsync("sample", "--model", run, "--count", "16", "--class", "all", "--steps", "4", "--out", grid, "--raw", raw, "--json");
        Assert.True(sample.ExitCode == 0, sample.Stderr);
        using (var image = Image.Load(grid)) Assert.True(image.Width > 4 * 28);
        var (values, shape) = Diffusion.IO.Npy.ReadFloat32(raw);
        Assert.Equal([16L, 1, 28, 28], shape);
        Assert.All(values, v => Assert.True(float.IsFinite(v)));
        // Not an all-black or flat grid: every sample varies across its pixels.
        for (var i = 0; i < 16; i++)
        {
            var pixels = values.Skip(i * 784).Take(784).ToArray();
            var mean = pixels.Average();
            var sd = Math.Sqrt(pixels.Average(v => (v - mean) * (v - mean)));
            Assert.True(sd > 0.05, $"sample {i} is flat: standard deviation {sd:F4}");
        }

        var eval = await CliRunner.RunAsync("eval", "--model", run, "--count", "200", "--steps", "4", "--evaluator-epochs", "1", "--evaluator-images", "3000", "--json");
        Assert.True(eval.ExitCode == 0, eval.Stderr);
        var fid = eval.Json.GetProperty("fid").GetDouble();
        var noiseFid = eval.Json.GetProperty("noiseFid").GetDouble();
        // 30 steps of an 8-channel model are far from converged, so only the report itself is checked here; the
        // metric's power to separate real images from noise is tested in Islands.Diffusion.Tests.
        Assert.True(double.IsFinite(fid) && fid > 0, $"FID {fid}");
        Assert.True(double.IsFinite(noiseFid) && noiseFid > 0, $"noise FID {noiseFid}");
        Assert.Equal(200, eval.Json.GetProperty("count").GetInt32());
    }

    [Fact]
    public async Task Should_skip_a_corrupted_checkpoint_when_sampling()
    {
        var data = await CliRunner.FashionMnistAsync();
        var run = Path.Combine(CliRunner.TempDir("corrupt"), "monolith");
        var train = await CliRunner.RunAsync("train", "expert", "--data", data, "--steps", "4", "--batch", "8", "--base-channels", "8", "--checkpoint-every", "2", "--out", run);
        Assert.True(train.ExitCode == 0, train.Stderr);
        var newest = Path.Combine(run, "checkpoints", "step-000000004", "ema.bin");
        var bytes = File.ReadAllBytes(newest);
        bytes[100] ^= 0xff;
        File.WriteAllBytes(newest, bytes);
        var sample = await CliRunner.RunAsync("sample", "--model", run, "--count", "4", "--steps", "2", "--out", Path.Combine(run, "g.png"), "--json");
        Assert.True(sample.ExitCode == 0, sample.Stderr);
        Assert.Contains("step-000000004", sample.Stderr);
        Assert.Contains("does not match", sample.Stderr);
        Assert.Equal(2, sample.Json.GetProperty("step").GetInt64());
    }

    [Fact]
    public async Task Should_report_benchmarks_as_json()
    {
        var train = await CliRunner.RunAsync("bench", "train", "--batch", "8", "--steps", "2", "--warmup", "1", "--json");
        Assert.True(train.ExitCode == 0, train.Stderr);
        var results = train.Json.GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(["fp32", "bf16"], results.Select(r => r.GetProperty("precision").GetString()!).ToArray());
        Assert.All(results, r => Assert.True(r.GetProperty("imagesPerSecond").GetDouble() > 0));
        Assert.All(results, r => Assert.True(r.GetProperty("matmulPeakGflops").GetDouble() > 0));
        Assert.True(train.Json.GetProperty("bf16OverFp32").GetDouble() > 0);
        // The default expert's counted cost: about 0.28 GFLOP forward, 3x that per training image.
        Assert.InRange(results[0].GetProperty("trainGflopPerImage").GetDouble(), 0.3, 1.5);
        var sample = await CliRunner.RunAsync("bench", "sample", "--count", "4", "--steps", "2", "--experts", "2", "--json");
        Assert.True(sample.ExitCode == 0, sample.Stderr);
        Assert.Equal(2, sample.Json.GetProperty("single").GetProperty("evaluationsPerImage").GetInt32());
        var strategies = sample.Json.GetProperty("ensemble").EnumerateArray().Select(r => r.GetProperty("strategy").GetString()!).ToArray();
        Assert.Equal(["one expert", "top1", "top2", "full"], strategies);
    }
}

/// <summary>The decentralized half through the CLI: experts on two partitions, a router, and routed sampling with a trace.</summary>
public sealed class EnsembleCliSpecs
{
    [Fact]
    public async Task Should_train_a_router_and_sample_an_ensemble_with_a_trace()
    {
        var data = await CliRunner.FashionMnistAsync();
        var work = CliRunner.TempDir("ensemble");
        var partitions = Path.Combine(work, "p2.json");
        var partition = await CliRunner.RunAsync("data", "partition", "--data", data, "--k", "2", "--fine", "64", "--out", partitions);
        Assert.True(partition.ExitCode == 0, partition.Stderr);
        var experts = new List<string>();
        for (var k = 0; k < 2; k++)
        {
            var run = Path.Combine(work, $"e{k}");
            // Experts may differ in architecture: the second one is wider.
            var trained = await CliRunner.RunAsync("train", "expert", "--data", data, "--partitions", partitions, "--expert", $"{k}", "--steps", "3",
                "--batch", "8", "--base-channels", k == 0 ? "8" : "16", "--out", run);
            Assert.True(trained.ExitCode == 0, trained.Stderr);
            experts.Add(run);
        }
        var routerRun = Path.Combine(work, "router");
        string[] trainRouter = ["train", "router", "--data", data, "--partitions", partitions, "--batch", "128", "--checkpoint-every", "30", "--out", routerRun, "--json"];
        var firstHalf = await CliRunner.RunAsync([.. trainRouter, "--steps", "30"]);
        Assert.True(firstHalf.ExitCode == 0, firstHalf.Stderr);
        Assert.False(firstHalf.Json.GetProperty("resumed").GetBoolean());
        var router = await CliRunner.RunAsync([.. trainRouter, "--steps", "60"]);
        Assert.True(router.ExitCode == 0, router.Stderr);
        Assert.True(router.Json.GetProperty("resumed").GetBoolean());
        Assert.Equal(60, router.Json.GetProperty("step").GetInt64());
        var bands = router.Json.GetProperty("heldOut").EnumerateArray().ToList();
        Assert.Equal(5, bands.Count);
        // Near t=0 the image is almost clean, so even a briefly trained router beats chance (0.5) clearly.
        Assert.True(bands[0].GetProperty("accuracy").GetDouble() > 0.7, router.Stdout);
        Assert.InRange(bands[0].GetProperty("expectedCalibrationError").GetDouble(), 0, 1);

        var trace = Path.Combine(work, "trace.json");
        string[] models = ["--model", experts[0], "--model", experts[1]];
        var sample = await CliRunner.RunAsync(["sample", .. models, "--router", routerRun, "--strategy", "top1", "--count", "6", "--class", "all",
            "--steps", "3", "--cfg", "2", "--trace", trace, "--out", Path.Combine(work, "grid.png"), "--json"]);
        Assert.True(sample.ExitCode == 0, sample.Stderr);
        var costs = sample.Json.GetProperty("costs");
        Assert.Equal(6.0, costs.GetProperty("evaluationsPerImage").GetDouble()); // 3 steps x 2 guidance branches x 1 expert
        Assert.InRange(costs.GetProperty("routerShareOfCost").GetDouble(), 0.0, 0.1);
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(trace));
        var steps = doc.RootElement.GetProperty("steps").EnumerateArray().ToList();
        Assert.Equal(3, steps.Count);
        Assert.All(steps, s => Assert.Equal(6, s.GetProperty("samples").GetArrayLength()));

        var gaussian = await CliRunner.RunAsync(["sample", .. models, "--strategy", "full", "--unavailable", "1", "--count", "4", "--steps", "2",
            "--out", Path.Combine(work, "g.png"), "--json"]);
        Assert.True(gaussian.ExitCode == 0, gaussian.Stderr);
        var evaluations = gaussian.Json.GetProperty("costs").GetProperty("expertEvaluations").EnumerateArray().Select(e => e.GetInt64()).ToArray();
        Assert.Equal([8L, 0L], evaluations);

        var wrongOrder = await CliRunner.RunAsync(["sample", "--model", experts[1], "--model", experts[0], "--count", "2", "--out", Path.Combine(work, "x.png")]);
        Assert.Equal(2, wrongOrder.ExitCode);
        Assert.Contains("partition order", wrongOrder.Stderr);
    }
}
