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
        Assert.Contains("--batch", changed.Stderr);

        var grid = Path.Combine(work, "grid.png");
        var raw = Path.Combine(work, "samples.npy");
        var sample = await CliRunner.RunAsync("sample", "--model", run, "--count", "16", "--class", "all", "--steps", "4", "--out", grid, "--raw", raw, "--json");
        Assert.True(sample.ExitCode == 0, sample.Stderr);
        using (var image = Image.Load(grid)) Assert.True(image.Width > 4 * 28);
        var (values, shape) = Diffusion.IO.Npy.ReadFloat32(raw);
        Assert.Equal([16L, 1, 28, 28], shape);
        Assert.All(values, v => Assert.True(float.IsFinite(v)));

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
        Assert.True(train.Json.GetProperty("imagesPerSecond").GetDouble() > 0);
        Assert.True(train.Json.GetProperty("matmulPeakGflops").GetDouble() > 0);
        // The default expert's counted cost: about 0.25 GFLOP forward, 3x that per training image.
        Assert.InRange(train.Json.GetProperty("trainGflopPerImage").GetDouble(), 0.3, 1.5);
        var sample = await CliRunner.RunAsync("bench", "sample", "--count", "4", "--steps", "2", "--json");
        Assert.True(sample.ExitCode == 0, sample.Stderr);
        Assert.Equal(2, sample.Json.GetProperty("evaluationsPerImage").GetInt32());
    }
}
