using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Configs;
using Islands.Diffusion.Runtime;
using Islands.Diffusion.Training;
using static TorchSharp.torch;

namespace Islands.Diffusion.Tests;

[Collection(GlobalRandomCollection.Name)]
public sealed class CheckpointSpecs
{
    private static readonly ModelConfig Tiny = new(BaseChannels: 8, ClassCount: 3);

    private static ExpertTrainer NewTrainer(int steps = 12, int seed = 7)
    {
        TorchSetup.Initialise(2);
        random.manual_seed(123);
        var images = rand(40, 1, 28, 28) * 2 - 1;
        var labels = randint(0, 3, [40]);
        var config = new TrainConfig(DataDirectory: "(memory)", Model: Tiny, Steps: steps, BatchSize: 8, WarmupSteps: 2, Seed: seed, KeepCheckpoints: 5);
        return new ExpertTrainer(config, images, labels);
    }

    [Fact]
    public void Should_round_trip_weights_optimizer_and_state()
    {
        var run = TestData.TempDir("ckpt");
        var store = new CheckpointStore(run);
        using var a = NewTrainer();
        a.Train(5);
        var committed = a.SaveCheckpoint(store);
        Assert.Equal(5, committed.Step);
        using var b = NewTrainer();
        b.LoadCheckpoint(committed.Directory);
        Assert.Equal(5, b.Step);
        Assert.Equal(a.LossHistory, b.LossHistory);
        var pa = a.Model.parameters().ToArray();
        var pb = b.Model.parameters().ToArray();
        for (var i = 0; i < pa.Length; i++) Assert.True(pa[i].eq(pb[i]).all().item<bool>());
        var ea = a.Ema.parameters().ToArray();
        var eb = b.Ema.parameters().ToArray();
        for (var i = 0; i < ea.Length; i++) Assert.True(ea[i].eq(eb[i]).all().item<bool>());
    }

    [Fact]
    public void A_second_commit_of_the_same_step_takes_a_new_name_and_leaves_the_first_as_it_was()
    {
        var run = TestData.TempDir("ckpt-revision");
        var store = new CheckpointStore(run);
        var first = store.Commit(30, 0.5f, dir => File.WriteAllText(Path.Combine(dir, "model.bin"), "first trainer"));
        var firstBytes = Directory.GetFiles(first.Directory).Order().Select(File.ReadAllBytes).ToList();
        var second = store.Commit(30, 0.25f, dir => File.WriteAllText(Path.Combine(dir, "model.bin"), "second trainer"));
        var third = store.Commit(30, 0.25f, dir => File.WriteAllText(Path.Combine(dir, "model.bin"), "third trainer"));

        Assert.Equal("step-000000030", Path.GetFileName(first.Directory));
        Assert.Equal("step-000000030-2", Path.GetFileName(second.Directory));
        Assert.Equal("step-000000030-3", Path.GetFileName(third.Directory));
        // The journal's reference to the first commit still verifies: same manifest hash, same bytes.
        CheckpointStore.VerifyReference(first.Directory, first.ManifestSha256);
        Assert.Equal(firstBytes, Directory.GetFiles(first.Directory).Order().Select(File.ReadAllBytes).ToList());
        Assert.NotEqual(first.ManifestSha256, second.ManifestSha256);
        Assert.Equal([third.Directory, second.Directory, first.Directory], store.List().Select(c => c.Directory));
        Assert.Equal("third trainer", File.ReadAllText(Path.Combine(store.NewestValid()!.Value.Directory, "model.bin")));
        store.Prune(keep: 1);
        Assert.Equal([third.Directory], store.List().Select(c => c.Directory));
    }

    [Fact]
    public void Should_follow_the_same_loss_curve_after_an_interruption_and_resume()
    {
        using var straight = NewTrainer();
        straight.Train(12);

        var run = TestData.TempDir("resume");
        var store = new CheckpointStore(run);
        using (var first = NewTrainer())
        {
            first.Train(6);
            first.SaveCheckpoint(store);
        }
        using var resumed = NewTrainer();
        resumed.LoadCheckpoint(store.NewestValid()!.Value.Directory);
        resumed.Train(6);
        Assert.Equal(12, resumed.Step);
        for (var i = 0; i < 12; i++) Assert.Equal(straight.LossHistory[i], resumed.LossHistory[i], 5);
    }

    [Fact]
    public void Should_refuse_a_corrupt_checkpoint_and_fall_back_to_the_previous_one()
    {
        var run = TestData.TempDir("corrupt");
        var store = new CheckpointStore(run);
        using var trainer = NewTrainer();
        trainer.Train(3);
        var older = trainer.SaveCheckpoint(store);
        trainer.Train(3);
        var newer = trainer.SaveCheckpoint(store);
        var weights = Path.Combine(newer.Directory, ExpertTrainer.ModelFile);
        var bytes = File.ReadAllBytes(weights);
        bytes[bytes.Length / 2] ^= 0x5a;
        File.WriteAllBytes(weights, bytes);

        var error = Assert.Throws<CheckpointException>(() => CheckpointStore.Verify(newer.Directory));
        Assert.Contains("model.bin", error.Message);
        Assert.Contains("does not match", error.Message);
        using var other = NewTrainer();
        Assert.Throws<CheckpointException>(() => other.LoadCheckpoint(newer.Directory));

        var skipped = new List<CheckpointException>();
        var valid = store.NewestValid(skipped);
        Assert.Equal(older.Directory, valid!.Value.Directory);
        Assert.Single(skipped);
    }

    [Fact]
    public void Should_refuse_an_incompatible_schema_version()
    {
        var run = TestData.TempDir("schema");
        var store = new CheckpointStore(run);
        using var trainer = NewTrainer();
        trainer.Train(1);
        var committed = trainer.SaveCheckpoint(store);
        var manifest = Path.Combine(committed.Directory, CheckpointManifest.FileName);
        File.WriteAllText(manifest, File.ReadAllText(manifest).Replace("\"schemaVersion\": 1", "\"schemaVersion\": 99"));
        var error = Assert.Throws<CheckpointException>(() => CheckpointStore.Verify(committed.Directory));
        Assert.Contains("schemaVersion 99", error.Message);
    }

    [Fact]
    public void Should_ignore_a_half_written_checkpoint_directory()
    {
        var run = TestData.TempDir("partial");
        var store = new CheckpointStore(run);
        using var trainer = NewTrainer();
        trainer.Train(2);
        var committed = trainer.SaveCheckpoint(store);
        // What a crash in the middle of a commit leaves behind: a temporary directory without a manifest.
        var partial = Path.Combine(store.Root, ".step-000000004.999.abc.tmp");
        Directory.CreateDirectory(partial);
        File.WriteAllText(Path.Combine(partial, "model.bin"), "half");
        Assert.Equal(committed.Directory, store.NewestValid()!.Value.Directory);
        Assert.Single(store.List());
    }
}
