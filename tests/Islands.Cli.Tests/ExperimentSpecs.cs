using System.Text.Json;
using SixLabors.ImageSharp;

namespace Islands.Cli.Tests;

/// <summary><c>islands experiment ddm --quick</c>: the whole experiment pipeline, end to end, on a tiny budget.</summary>
public sealed class ExperimentSpecs
{
    [Fact]
    public async Task Should_run_the_whole_ddm_experiment_quickly_write_its_report_and_resume_without_redoing_anything()
    {
        var data = await CliRunner.FashionMnistAsync();
        var work = CliRunner.TempDir("ddm");
        string[] command = ["experiment", "ddm", "--quick", "--budget-minutes", "1", "--seeds", "2", "--data", data, "--out", work, "--json"];

        var run = await CliRunner.RunAsync(command);
        Assert.True(run.ExitCode == 0, run.Stderr);
        var report = run.Json.GetProperty("report").GetString()!;
        var steps = run.Json.GetProperty("steps").GetInt32();
        var markdown = await File.ReadAllTextAsync(report);

        // Every method is scored at every evaluation point, for both seeds, with the same number of samples.
        var stages = Path.Combine(work, "stages");
        var evals = Directory.GetFiles(stages, "eval-*.json").Select(f => JsonDocument.Parse(File.ReadAllText(f)).RootElement).ToList();
        foreach (var seed in new[] { 0, 1 })
            foreach (var method in new[] { "monolith", "top1", "top2", "full", "oracle" })
                Assert.Equal(2, evals.Count(e => e.GetProperty("seed").GetInt32() == seed && e.GetProperty("method").GetString() == method
                    && e.GetProperty("arm").GetString() is "monolith" or "ddm-k4"));
        Assert.All(evals, e => Assert.True(double.IsFinite(e.GetProperty("fid").GetDouble()) && e.GetProperty("fid").GetDouble() > 0));
        Assert.All(evals, e => Assert.Equal(96, e.GetProperty("samples").GetInt32()));
        foreach (var arm in new[] { "ddm-k2", "ddm-k8", "random-k4", "failure-k4" })
            Assert.Equal(2, evals.Count(e => e.GetProperty("arm").GetString() == arm));
        Assert.Equal(2, evals.Count(e => e.GetProperty("method").GetString() == "top1gaussian"));

        // Equal compute: the experts' FLOPs equal the monolith's at each point; DDM adds only its router.
        var monolithFinal = evals.Single(e => e.GetProperty("seed").GetInt32() == 0 && e.GetProperty("method").GetString() == "monolith" && e.GetProperty("step").GetInt64() == steps);
        var top1Final = evals.Single(e => e.GetProperty("seed").GetInt32() == 0 && e.GetProperty("arm").GetString() == "ddm-k4" && e.GetProperty("method").GetString() == "top1" && e.GetProperty("step").GetInt64() == steps);
        var extra = top1Final.GetProperty("trainFlops").GetDouble() / monolithFinal.GetProperty("trainFlops").GetDouble();
        Assert.InRange(extra, 1.0001, 1.2);

        // The failure run really was killed part way and resumed from a checkpoint before the end.
        foreach (var seed in new[] { 0, 1 })
        {
            var failure = JsonDocument.Parse(File.ReadAllText(Path.Combine(stages, $"failure-s{seed}.json"))).RootElement;
            Assert.True(failure.GetProperty("killed").GetBoolean(), failure.ToString());
            Assert.InRange(failure.GetProperty("resumedFromStep").GetInt64(), 1, steps - 1);
        }

        // The report has its tables, its plot and its grids, and says how to reproduce it.
        foreach (var heading in new[] { "## Main result", "## Along training", "## Ablations", "## What a failure costs", "## Router accuracy by t", "## Reproduce" })
            Assert.Contains(heading, markdown);
        Assert.Matches(@"\| DDM top-1 \| \d+\.\d\d ± \d+\.\d\d \|", markdown);
        Assert.Contains("islands experiment ddm --quick", markdown);
        var reportDir = Path.GetDirectoryName(report)!;
        using (var plot = Image.Load(Path.Combine(reportDir, "fid-vs-flops.png"))) Assert.Equal(800, plot.Width);
        foreach (var grid in new[] { "monolith-monolith", "ddm-k4-top1", "ddm-k4-full", "ddm-k4-oracle", "random-k4-top1", "ddm-k8-top1" })
            using (var image = Image.Load(Path.Combine(reportDir, "grids", grid + ".png"))) Assert.True(image.Width >= 8 * 28);
        Assert.True(File.Exists(Path.Combine(work, "plan.json")));

        // A rerun finds every stage done: it rewrites the same report without training or sampling again.
        var stamps = Directory.GetFiles(stages).ToDictionary(f => f, File.GetLastWriteTimeUtc);
        var again = await CliRunner.RunAsync(command);
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.Contains("resuming", again.Stderr);
        Assert.All(stamps, s => Assert.Equal(s.Value, File.GetLastWriteTimeUtc(s.Key)));
        Assert.Equal(markdown, await File.ReadAllTextAsync(report));

        // The same directory with other options is refused, naming the option.
        var other = await CliRunner.RunAsync(["experiment", "ddm", "--quick", "--budget-minutes", "1", "--seeds", "3", "--data", data, "--out", work]);
        Assert.Equal(2, other.ExitCode);
        Assert.Contains("--seeds (2 vs 3)", other.Stderr);
    }

    [Fact]
    public async Task Should_run_the_experiment_at_the_datasets_shape_on_colour_non_square_images_including_its_failure_run()
    {
        var work = CliRunner.TempDir("ddm-rgb");
        var data = Path.Combine(work, "data");
        var import = await CliRunner.RunAsync("data", "import", "--source", "synthetic-rgb", "--out", data);
        Assert.True(import.ExitCode == 0, import.Stderr);
        var run = await CliRunner.RunAsync("experiment", "ddm", "--quick", "--budget-minutes", "1", "--seeds", "1", "--data", data,
            "--out", Path.Combine(work, "ddm"), "--json");
        Assert.True(run.ExitCode == 0, run.Stderr);
        var stages = Path.Combine(work, "ddm", "stages");
        var evals = Directory.GetFiles(stages, "eval-*.json").Select(f => JsonDocument.Parse(File.ReadAllText(f)).RootElement).ToList();
        Assert.NotEmpty(evals);
        Assert.All(evals, e => Assert.True(double.IsFinite(e.GetProperty("fid").GetDouble()) && e.GetProperty("fid").GetDouble() > 0));
        Assert.True(JsonDocument.Parse(File.ReadAllText(Path.Combine(stages, "failure-s0.json"))).RootElement.GetProperty("killed").GetBoolean());
        // The grids are colour images of 32-pixel-wide samples (synthetic-rgb is 3 x 24 x 32), not grey 28 x 28 ones.
        var grids = Path.Combine(Path.GetDirectoryName(run.Json.GetProperty("report").GetString()!)!, "grids");
        using var grid = Image.Load<SixLabors.ImageSharp.PixelFormats.Rgb24>(Path.Combine(grids, "ddm-k4-top1.png"));
        Assert.True(grid.Width >= 8 * 32, $"{grid.Width} px");
        var colourful = 0;
        grid.ProcessPixelRows(rows =>
        {
            for (var y = 0; y < rows.Height; y++)
                foreach (var p in rows.GetRowSpan(y))
                    if (Math.Abs(p.R - p.G) > 16 || Math.Abs(p.G - p.B) > 16) colourful++;
        });
        Assert.True(colourful > grid.Width, $"{colourful} pixels whose channels differ");
    }

    [Fact]
    public async Task Should_refuse_a_k_that_does_not_split_the_batch_naming_the_option()
    {
        var result = await CliRunner.RunAsync("experiment", "ddm", "--quick", "--k", "3", "--out", CliRunner.TempDir("ddm-bad"));
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--k: 3", result.Stderr);
    }
}
