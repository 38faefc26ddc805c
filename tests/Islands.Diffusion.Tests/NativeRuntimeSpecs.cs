using Islands.Diffusion.Configs;
using Islands.Diffusion.Runtime;
using Islands.Diffusion.Training;
using static TorchSharp.torch;

namespace Islands.Diffusion.Tests;

[Collection(SerialCollection.Name)]
public sealed class NativeRuntimeSpecs
{
    [Fact]
    public void Should_load_libtorch_and_run_one_training_step()
    {
        TorchSetup.Initialise(2);
        var config = new TrainConfig(DataDirectory: "(memory)", Steps: 1, BatchSize: 4, Model: new ModelConfig(BaseChannels: 8, ClassCount: 3));
        using var trainer = new ExpertTrainer(config, rand(8, 1, 28, 28) * 2 - 1, randint(0, 3, [8]));
        var loss = trainer.Train(1);
        Assert.Equal(1, trainer.Step);
        Assert.True(float.IsFinite(loss) && loss > 0, $"loss {loss}");
    }

    [Fact]
    public void Should_keep_resident_memory_bounded_while_training()
    {
        TorchSetup.Initialise(2);
        var config = new TrainConfig(DataDirectory: "(memory)", Steps: 60, BatchSize: 32, WarmupSteps: 0);
        using var trainer = new ExpertTrainer(config, rand(512, 1, 28, 28) * 2 - 1, randint(0, 10, [512]));
        trainer.Train(10);
        var afterWarmup = TorchSetup.ResidentBytes();
        trainer.Train(50);
        var growthMb = (TorchSetup.ResidentBytes() - afterWarmup) / 1048576.0;
        // Without the allocator settings this configuration grows by tens of MB per step (GBs over 50 steps).
        Assert.True(growthMb < 250, $"resident memory grew {growthMb:F0} MB over 50 steps (mode {MallocTuning.Mode})");
    }
}
