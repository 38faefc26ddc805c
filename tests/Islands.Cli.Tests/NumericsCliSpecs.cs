using Islands.Diffusion.Numerics;

namespace Islands.Cli.Tests;

/// <summary>The start-up self-test as a user meets it: one stderr line, the chosen path in --json, a fallback under a fault.</summary>
public sealed class NumericsCliSpecs
{
    [Fact]
    public async Task Should_log_the_self_test_and_report_the_chosen_path_in_json_and_fall_back_when_a_kernel_is_wrong()
    {
        var data = Path.Combine(CliRunner.TempDir("numerics"), "syn");
        var import = await CliRunner.RunAsync("data", "import", "--source", "synthetic", "--out", data);
        Assert.True(import.ExitCode == 0, import.Stderr);
        string[] train = ["train", "expert", "--data", data, "--steps", "3", "--batch", "8", "--precision", "bf16", "--threads", "2", "--json"];

        var plain = CliRunner.RunProcess([.. train, "--out", Path.Combine(data, "..", "plain")]);
        Assert.True(plain.ExitCode == 0, plain.Stderr);
        Assert.Single(plain.Stderr.Split('\n'), l => l.StartsWith("numerics self-test on ", StringComparison.Ordinal));
        var numerics = plain.Json.GetProperty("numerics");
        Assert.Contains(numerics.GetProperty("path").GetString(), NumericsPolicy.Candidates.Select(c => c.Name));
        Assert.False(string.IsNullOrEmpty(numerics.GetProperty("cpu").GetString()));

        // A deliberately wrong convolution on the direct oneDNN path: the process must take another path and say so.
        var faulty = CliRunner.RunProcess(new Dictionary<string, string> { [NumericsFault.Variable] = "onednn/*/conv" },
            [.. train, "--out", Path.Combine(data, "..", "faulty")]);
        Assert.True(faulty.ExitCode == 0, faulty.Stderr);
        var line = faulty.Stderr.Split('\n').Single(l => l.StartsWith("numerics self-test on ", StringComparison.Ordinal));
        Assert.Contains("onednn wrong in conv", line);
        Assert.Contains("injected fault onednn/*/conv", line);
        var chosen = faulty.Json.GetProperty("numerics");
        Assert.NotEqual(NumericsPolicy.Direct.Name, chosen.GetProperty("path").GetString());
        Assert.Contains(chosen.GetProperty("failedChecks").EnumerateArray(), f => f.GetString()!.StartsWith("onednn: conv", StringComparison.Ordinal));
        Assert.True(float.IsFinite((float)faulty.Json.GetProperty("finalLoss").GetDouble()));

        var malformed = CliRunner.RunProcess(new Dictionary<string, string> { [NumericsFault.Variable] = "nonsense" },
            [.. train, "--out", Path.Combine(data, "..", "malformed")]);
        Assert.Equal(2, malformed.ExitCode);
        Assert.Contains($"islands: error: {NumericsFault.Variable}: 'nonsense' must be policy/precision/check-prefix", malformed.Stderr);
    }
}
