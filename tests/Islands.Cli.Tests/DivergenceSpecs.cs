using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Training;

namespace Islands.Cli.Tests;

/// <summary>`islands train expert` driven into NaN through the test-only fault variable, in a real child process.</summary>
public sealed class DivergenceSpecs
{
    [Fact]
    public async Task Should_exit_1_naming_the_divergence_and_leave_only_finite_checkpoints()
    {
        var data = await CliRunner.FashionMnistAsync();
        var run = Path.Combine(CliRunner.TempDir("diverge"), "monolith");
        string[] train = ["train", "expert", "--data", data, "--steps", "16", "--batch", "8", "--base-channels", "8", "--checkpoint-every", "4",
            "--keep", "5", "--out", run, "--threads", "2"];

        var diverged = CliRunner.RunProcess(new Dictionary<string, string> { [FaultInjection.NanFromStepVariable] = "6" }, train);

        Assert.True(diverged.ExitCode == 1, $"exit {diverged.ExitCode}: {diverged.Stderr}");
        Assert.Contains("islands: error: monolith: training diverged at step", diverged.Stderr);
        Assert.Contains("non-finite", diverged.Stderr);
        Assert.Equal(2, diverged.Stderr.Split('\n').Count(l => l.Contains("rolling back")));
        var checkpoints = new RunDirectory(run).Checkpoints.List();
        Assert.Equal([4L], checkpoints.Select(c => c.Step));
        Assert.Null(WeightsFile.FirstNonFinite(Path.Combine(checkpoints[0].Directory, ExpertTrainer.EmaFile)));
        Assert.Null(WeightsFile.FirstNonFinite(Path.Combine(checkpoints[0].Directory, ExpertTrainer.ModelFile)));

        // Without the fault the same command resumes from the last good checkpoint and completes.
        var resumed = CliRunner.RunProcess(train);
        Assert.True(resumed.ExitCode == 0, resumed.Stderr);
        Assert.Contains("resuming from step 4", resumed.Stderr);
    }
}
