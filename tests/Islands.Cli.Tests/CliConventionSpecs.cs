namespace Islands.Cli.Tests;

public sealed class CliConventionSpecs
{
    [Theory]
    [InlineData("--help")]
    [InlineData("data", "import", "--help")]
    [InlineData("train", "expert", "--help")]
    [InlineData("sample", "--help")]
    [InlineData("eval", "--help")]
    [InlineData("bench", "train", "--help")]
    public async Task Should_print_help_and_exit_zero(params string[] args)
    {
        var result = await CliRunner.RunAsync(args);
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("Usage:", result.Stdout);
    }

    [Fact]
    public async Task Should_report_a_usage_error_as_one_line_with_exit_code_2()
    {
        var result = await CliRunner.RunAsync("data", "partition", "--data", "x", "--k", "four", "--out", "y");
        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("islands: ", result.Stderr);
        Assert.Contains("four", result.Stderr);
        Assert.Equal("", result.Stdout);
    }

    [Fact]
    public async Task Should_report_a_missing_dataset_without_a_stack_trace()
    {
        var result = await CliRunner.RunAsync("data", "partition", "--data", "/nonexistent/ds", "--k", "4", "--out", Path.Combine(CliRunner.TempDir("p"), "p.json"));
        Assert.Equal(1, result.ExitCode);
        Assert.Single(result.Stderr.Trim().Split('\n'));
        Assert.Contains("/nonexistent/ds", result.Stderr);
        Assert.DoesNotContain("   at ", result.Stderr);
    }

    [Fact]
    public void Should_exit_non_zero_from_a_real_process_on_a_bad_source()
    {
        var result = CliRunner.RunProcess("data", "import", "--source", "nonsense", "--out", Path.Combine(CliRunner.TempDir("bad"), "ds"));
        Assert.Equal(2, result.ExitCode);
        Assert.Equal("islands: error: --source: 'nonsense' is not a known source; use fashion-mnist, synthetic, synthetic-rgb, idx:DIR or folder:DIR", result.Stderr.Trim());
    }

    [Fact]
    public async Task Should_reject_a_truncated_idx_file_and_leave_no_output()
    {
        var source = CliRunner.TempDir("idx");
        var fm = await CliRunner.FashionMnistAsync();
        foreach (var f in new[] { "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz" })
            File.Copy(Path.Combine(Diffusion.Data.DatasetImporter.FashionMnistDirectory, f), Path.Combine(source, f));
        var images = Path.Combine(source, "train-images-idx3-ubyte.gz");
        var bytes = File.ReadAllBytes(images);
        File.WriteAllBytes(images, bytes[..(bytes.Length / 2)]);
        var parent = CliRunner.TempDir("out");
        var result = await CliRunner.RunAsync("data", "import", "--source", $"idx:{source}", "--out", Path.Combine(parent, "ds"));
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("train-images-idx3-ubyte.gz", result.Stderr);
        Assert.Contains("truncated", result.Stderr);
        Assert.Empty(Directory.GetFileSystemEntries(parent));
        Assert.True(Directory.Exists(fm));
    }
}
