using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Configs;
using Islands.Diffusion.IO;
using Islands.Diffusion.Runtime;
using Islands.Diffusion.Serving;
using Islands.Diffusion.Training;
using static TorchSharp.torch;

namespace Islands.Diffusion.Tests;

/// <summary>The non-finite guard: skipped steps, refused checkpoints and publications, rollback, divergence.</summary>
public sealed class NonFiniteGuardSpecs
{
    private static readonly ModelConfig Tiny = new(BaseChannels: 8, ClassCount: 3);

    private static ExpertTrainer NewTrainer(string precision = "fp32", double gradClip = 1.0)
    {
        TorchSetup.Initialise(2);
        random.manual_seed(123);
        var images = rand(40, 1, 28, 28) * 2 - 1;
        var labels = randint(0, 3, [40]);
        // A constant learning rate, so the optimizer's saved state (which holds the rate) changes only when it steps.
        var config = new TrainConfig(DataDirectory: "(memory)", Model: Tiny, Steps: 40, BatchSize: 8, WarmupSteps: 0, MinLearningRateFraction: 1, Seed: 3,
            Precision: precision, GradClip: gradClip);
        return new ExpertTrainer(config, images, labels);
    }

    private static float[][] Snapshot(nn.Module module) => module.parameters().Select(p => p.detach().cpu().data<float>().ToArray()).ToArray();

    private static byte[] OptimizerBytes(ExpertTrainer trainer, CheckpointStore store)
    {
        var saved = trainer.SaveCheckpoint(store);
        return File.ReadAllBytes(Path.Combine(saved.Directory, ExpertTrainer.OptimizerFile));
    }

    [Theory]
    [InlineData("fp32", 1.0)]
    [InlineData("fp32", 0.0)]
    [InlineData("bf16", 1.0)]
    public void Should_skip_non_finite_steps_leaving_weights_and_optimizer_untouched_and_count_them(string precision, double gradClip)
    {
        using var trainer = NewTrainer(precision, gradClip);
        var store = new CheckpointStore(TestData.TempDir("guard-skip"));
        trainer.Train(3);
        var model = Snapshot(trainer.Model);
        var ema = Snapshot(trainer.Ema);
        var optimizer = OptimizerBytes(trainer, store);

        trainer.FaultNanFromStep = 3;
        var loss = trainer.Train(10);

        Assert.True(float.IsNaN(loss));
        Assert.Equal(3 + 5, trainer.Step); // Step advances on a bad step; the chunk stops at MaxConsecutiveBadSteps (5)
        Assert.Equal(5, trainer.Guard.BadSteps);
        Assert.True(trainer.Guard.Diverging);
        Assert.Equal(3, trainer.Guard.StreakStartedAt);
        Assert.All(trainer.LossHistory.Skip(3), l => Assert.True(float.IsNaN(l)));
        Assert.All(trainer.LossHistory.Take(3), l => Assert.True(float.IsFinite(l)));
        Assert.Equal(model, Snapshot(trainer.Model));
        Assert.Equal(ema, Snapshot(trainer.Ema));
        Assert.Equal(optimizer, OptimizerBytes(trainer, store)); // a finite checkpoint: weights never saw the NaN gradients
    }

    [Fact]
    public void Should_refuse_to_commit_a_checkpoint_with_a_non_finite_weight()
    {
        using var trainer = NewTrainer();
        trainer.Train(2);
        var store = new CheckpointStore(TestData.TempDir("guard-commit"));
        using (no_grad()) trainer.Ema.parameters().Last().fill_(float.PositiveInfinity);
        var error = Assert.Throws<NonFiniteTensorException>(() => trainer.SaveCheckpoint(store));
        Assert.StartsWith("ema.", error.Tensor);
        Assert.Contains("step 2", error.Message);
        Assert.Empty(store.List());
        Assert.False(Directory.Exists(store.Root) && Directory.EnumerateFileSystemEntries(store.Root).Any());
    }

    [Fact]
    public void Should_find_a_non_finite_tensor_in_a_saved_module_without_building_it()
    {
        using var trainer = NewTrainer();
        var dir = TestData.TempDir("guard-weights");
        var good = Path.Combine(dir, "good.bin");
        trainer.Model.save(good);
        Assert.Null(WeightsFile.FirstNonFinite(good));
        var (name, parameter) = trainer.Model.named_parameters().Skip(3).First();
        using (no_grad()) parameter.view(-1)[0] = float.NaN;
        var bad = Path.Combine(dir, "bad.bin");
        trainer.Model.save(bad);
        Assert.Equal(name, WeightsFile.FirstNonFinite(bad));
        Assert.Equal(name, NonFiniteGuard.FirstNonFinite(trainer.Model));
    }

    [Fact]
    public void Should_refill_the_rollback_budget_only_after_progress_past_the_failure()
    {
        var budget = new RollbackBudget("expert:0", maxRollbacks: 2);
        budget.Spend(20, failedAt: 15, "bad");
        budget.Committed(12); // a checkpoint before the failure is no progress
        budget.Spend(20, failedAt: 15, "bad");
        var error = Assert.Throws<TrainingDivergedException>(() => budget.Spend(20, failedAt: 15, "bad"));
        Assert.Equal("expert:0", error.Job);
        Assert.Contains("diverged at step 20", error.Message);
        budget.Committed(16);
        budget.Spend(30, failedAt: 25, "bad again"); // recovered: the budget is full again
        Assert.Equal(3, budget.TotalRollbacks);
    }

    [Fact]
    public void Should_parse_the_fault_variable_per_job()
    {
        Assert.Equal(7, FaultInjection.Parse("7", "expert:1"));
        Assert.Equal(40, FaultInjection.Parse("expert:0=3;expert:1=40", "expert:1"));
        Assert.Null(FaultInjection.Parse("router=5", "expert:1"));
        Assert.Null(FaultInjection.Parse(null, "router"));
        Assert.Throws<ConfigException>(() => FaultInjection.Parse("soon", "router"));
    }

    [Fact]
    public void Should_roll_back_then_end_diverged_with_only_finite_checkpoints_and_resume_once_the_fault_is_gone()
    {
        var run = Path.Combine(TestData.TempDir("guard-run"), "monolith");
        var config = new TrainConfig(Job: "monolith", DataDirectory: TestData.FashionMnistDirectory, Model: new ModelConfig(BaseChannels: 8), Steps: 16, BatchSize: 8,
            WarmupSteps: 2, CheckpointEvery: 4, KeepCheckpoints: 5, MaxConsecutiveBadSteps: 3, MaxRollbacks: 2);
        var log = new List<string>();
        TrainingDivergedException error;
        using (FaultInjection.Scope("6"))
            error = Assert.Throws<TrainingDivergedException>(() => TrainingRun.Execute(config, run, log: log.Add));

        Assert.Equal("monolith", error.Job);
        Assert.Contains("non-finite", error.Reason);
        Assert.Contains("gave up after 2 rollback(s)", error.Message);
        Assert.Equal(2, log.Count(l => l.Contains("rolling back")));
        var store = new RunDirectory(run).Checkpoints;
        Assert.Equal([4L], store.List().Select(c => c.Step)); // never a checkpoint at or after the fault
        foreach (var (_, dir) in store.List())
        {
            Assert.Null(WeightsFile.FirstNonFinite(Path.Combine(dir, ExpertTrainer.ModelFile)));
            Assert.Null(WeightsFile.FirstNonFinite(Path.Combine(dir, ExpertTrainer.EmaFile)));
        }

        var resumed = TrainingRun.Execute(config, run);
        Assert.True(resumed.Completed);
        Assert.Equal(4, resumed.ResumedFromStep);
        Assert.Equal(0, resumed.BadSteps);
        Assert.True(float.IsFinite(resumed.FinalLoss));
    }

    [Fact]
    public void Should_refuse_a_published_checkpoint_with_non_finite_weights_and_never_publish_one()
    {
        using var trainer = NewTrainer();
        var store = TestData.TempDir("guard-store");
        var goodRun = Path.Combine(store, "island-a");
        var badRun = Path.Combine(store, "island-b");
        trainer.Train(2);
        var good = trainer.SaveCheckpoint(new CheckpointStore(goodRun));
        PublishedCheckpoint.Publish(goodRun, "expert:0", "island-a", good);

        // A writer without the guard (or a disk that flipped bits before hashing) commits NaN weights for expert 1.
        using (no_grad()) trainer.Ema.parameters().First().fill_(float.NaN);
        var bad = new CheckpointStore(badRun).Commit(2, 0.5f, dir =>
        {
            trainer.Model.save(Path.Combine(dir, ExpertTrainer.ModelFile));
            trainer.Ema.save(Path.Combine(dir, ExpertTrainer.EmaFile));
        });
        var publishError = Assert.Throws<CheckpointException>(() => PublishedCheckpoint.Publish(badRun, "expert:1", "island-b", bad));
        Assert.Contains("not finite", publishError.Message);
        Assert.False(File.Exists(Path.Combine(badRun, PublishedCheckpoint.FileName)));

        var manifest = Json.Read<CheckpointManifest>(Path.Combine(bad.Directory, CheckpointManifest.FileName));
        Json.WriteAtomic(Path.Combine(badRun, PublishedCheckpoint.FileName), new PublishedCheckpoint(PublishedCheckpoint.CurrentSchemaVersion, "expert:1",
            "island-b", 2, Path.GetRelativePath(badRun, bad.Directory), bad.ManifestSha256, manifest.Files, 0.5f, DateTimeOffset.UtcNow));
        var scan = PublishedModels.Scan(store);
        Assert.Equal([0], scan.Experts.Select(e => e.Expert!.Value));
        var refused = Assert.Single(scan.Refused);
        Assert.Contains("not finite", refused);
        Assert.Contains(ExpertTrainer.EmaFile, refused);
    }
}
