using Islands.Cli;
using Islands.Actors;
using Islands.Hosting;
using Islands.Cli.Demo;

namespace Islands.Island.Tests;

/// <summary>What the demo, `cluster status` and `status` print for a job: its real phase and step, "?" for what is not known.</summary>
public sealed class StatusTextSpecs
{
    private static JobStatus Job(string phase, long step, float? loss, CommittedCheckpoint? checkpoint = null) =>
        new("expert-1", "expert:1", phase, step, 500, loss, 57.4, checkpoint, 0, 0, [], "akka.tcp://islands@127.0.0.1:4053", null);

    private static DemoIslandState Demo(string phase, long? step, long? checkpoint = 100, float? checkpointLoss = 0.12f, string? error = null, bool stopped = false) =>
        new("expert-1", "expert:1", phase, step, 500, 0.1234f, 60, checkpoint, checkpointLoss, stopped ? null : "http://127.0.0.1:7102/status", error, stopped);

    [Fact]
    public void Should_show_an_unknown_step_or_total_as_a_question_mark_never_as_zero()
    {
        Assert.Equal("120/500", StatusText.Steps(120, 500));
        Assert.Equal("0/500", StatusText.Steps(0, 500));
        Assert.Equal("?/500", StatusText.Steps(null, 500));
        Assert.Equal("?/?", StatusText.Steps(null, null));
        Assert.Equal("3/?", StatusText.Steps(3, 0));
        Assert.Equal("step ?/450 (phase unknown: no node answers)", StatusText.NoAnswer(450));
    }

    [Fact]
    public void Should_show_a_loss_as_it_is()
    {
        Assert.Equal("0.1234", StatusText.Loss(0.12341f));
        Assert.Equal("NaN", StatusText.Loss(float.NaN));
        Assert.Equal("-Infinity", StatusText.Loss(float.NegativeInfinity));
        Assert.Equal("-", StatusText.Loss(null));
        Assert.Equal("none", StatusText.Checkpoint(null, null));
        Assert.Equal("step 100", StatusText.Checkpoint(100, 0.5f));
        Assert.Equal("step 100 (loss NaN)", StatusText.Checkpoint(100, float.NaN));
    }

    [Fact]
    public void Should_write_a_job_line_with_its_phase_step_loss_and_checkpoint()
    {
        var line = StatusText.Job(Job("training", 120, 0.25f, new CommittedCheckpoint(100, "checkpoints/step-000000100", "ab", float.NaN, DateTimeOffset.UnixEpoch)));
        Assert.Equal("training step 120/500, loss 0.2500, 57 img/s, last checkpoint step 100 (loss NaN) on akka.tcp://islands@127.0.0.1:4053", line);
        Assert.StartsWith("diverged step 31/500, loss -,", StatusText.Job(Job("diverged", 31, null)));
    }

    [Fact]
    public void Should_write_the_demo_lines_from_the_islands_real_state()
    {
        Assert.Equal("expert-1  training   step 120/500 loss 0.1234 60 img/s checkpoint step 100", StatusText.Demo(Demo("training", 120)));
        var unreachable = StatusText.Demo(Demo("unreachable", null, error: "http://127.0.0.1:7102/status: Response status code does not indicate success: 500"));
        Assert.Contains("unreachable step ?/500", unreachable);
        Assert.Contains("500", unreachable);
        Assert.DoesNotContain("0/0", unreachable);

        Assert.Equal("expert-1  stopped at step 120/500 (phase training), last checkpoint step 120; rerun to continue",
            StatusText.DemoSummary(Demo("training", 120, checkpoint: 120, stopped: true)));
        Assert.Equal("expert-1  stopped at step ?/500 (phase waiting-for-journal), last checkpoint none; rerun to continue",
            StatusText.DemoSummary(Demo("waiting-for-journal", null, checkpoint: null, stopped: true)));
        Assert.Equal("expert-1  http://127.0.0.1:7102/status  (completed, step 500/500, checkpoint step 500)",
            StatusText.DemoSummary(Demo("completed", 500, checkpoint: 500)));
    }

    [Fact]
    public void Should_name_the_islands_without_a_usable_model()
    {
        DemoIslandState[] states =
        [
            Demo("completed", 500, checkpoint: 500) with { Island = "expert-0" },
            Demo("diverged", 31) with { Island = "expert-1" },
            Demo("training", 20, checkpoint: null, error: "nothing published yet") with { Island = "expert-2" },
            Demo("training", 200, checkpoint: 200, checkpointLoss: float.NaN) with { Island = "expert-3" },
            Demo("training", 200, checkpoint: 150, checkpointLoss: null, stopped: true) with { Island = "router" },
        ];
        var unusable = LocalDemo.UnusableIslands(states);
        Assert.Equal(
        [
            "expert-1 (phase diverged at step 31/500)",
            "expert-2 (no committed checkpoint; phase training, step 20/500; nothing published yet)",
            "expert-3 (its checkpoint at step 200 has loss NaN)",
        ], unusable);
        Assert.Empty(LocalDemo.UnusableIslands([states[0], states[4]]));
    }

    [Fact]
    public void Should_refuse_sampled_images_that_are_not_finite_or_are_one_flat_colour()
    {
        Assert.True(LocalDemo.IsConstant(new byte[784]));
        Assert.True(LocalDemo.IsConstant(Enumerable.Repeat((byte)255, 784).ToArray()));
        Assert.False(LocalDemo.IsConstant([0, 0, 1, 0]));
        Assert.Null(LocalDemo.ImageCheck("square", 8, 0, 0));
        Assert.Equal("class 'square': 2 of 8 hold NaN or infinite values, 8 of 8 are one flat colour", LocalDemo.ImageCheck("square", 8, 2, 8));
        Assert.Equal("class 'circle': no images came back", LocalDemo.ImageCheck("circle", 0, 0, 0));
    }
}
