using System.Diagnostics;
using Islands.Diffusion.Configs;
using Islands.Diffusion.Runtime;
using Islands.Diffusion.Training;
using static TorchSharp.torch;

namespace Islands.Diffusion.Benchmarks;

public sealed record TrainBenchmarkResult(string Precision, int Batch, int Threads, int Steps, long Parameters, double ForwardGflopPerImage,
    double TrainGflopPerImage, double ImagesPerSecond, double AchievedGflops, double MatmulPeakGflops, double FractionOfPeak,
    double RssStartMb, double RssAfterWarmupMb, double RssEndMb, string Malloc,
    double GuardedSecondsPerStep = 0, double UnguardedSecondsPerStep = 0, double GuardOverhead = 0);

/// <summary>Training throughput of the default expert on random data, beside this CPU's measured matmul peak.</summary>
public static class TrainBenchmark
{
    public static TrainBenchmarkResult Run(ModelConfig model, int batch, int steps, int warmup, string precision = "fp32", double? peak = null)
    {
        var rssStart = TorchSetup.ResidentBytes();
        // Beyond the timed steps: the same number again, half with the non-finite guard off, to price the guard.
        var config = new TrainConfig(DataDirectory: "(synthetic)", Model: model, Steps: warmup + 2 * steps + 2, BatchSize: batch,
            Precision: precision, WarmupSteps: 0);
        var n = Math.Max(batch * 4, 1024);
        var images = rand(n, model.ImageChannels, model.Height, model.Width) * 2 - 1;
        var labels = randint(0, Math.Max(1, model.ClassCount), [n]);
        using var trainer = new ExpertTrainer(config, images, labels);
        var forward = CountForwardFlopsPerImage(trainer.Model, model);
        trainer.Train(warmup);
        var rssWarm = TorchSetup.ResidentBytes();
        var watch = Stopwatch.StartNew();
        trainer.Train(steps);
        var seconds = watch.Elapsed.TotalSeconds;
        var ips = steps * batch / seconds;
        var trainFlops = 3 * forward;
        var peakGflops = peak ?? MatmulPeak.GflopsPerSecond(precision == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32);
        var achieved = ips * trainFlops / 1e9;
        var (guarded, unguarded) = PriceGuard(trainer, Math.Max(2, steps));
        return new TrainBenchmarkResult(precision, batch, get_num_threads(), steps, trainer.Model.ParameterCount(), forward / 1e9, trainFlops / 1e9,
            ips, achieved, peakGflops, achieved / peakGflops, rssStart / 1048576.0, rssWarm / 1048576.0, TorchSetup.ResidentBytes() / 1048576.0,
            MallocTuning.Mode, guarded, unguarded, unguarded > 0 ? guarded / unguarded - 1 : 0);
    }

    /// <summary>
    /// Seconds per step with and without the non-finite guard (the gradient-norm read and the finiteness check),
    /// alternating single steps so that drift in the machine's speed hits both alike.
    /// </summary>
    private static (double Guarded, double Unguarded) PriceGuard(ExpertTrainer trainer, int steps)
    {
        double on = 0, off = 0;
        int onSteps = 0, offSteps = 0;
        for (var i = 0; i < steps; i++)
        {
            trainer.GuardEnabled = i % 2 == 0;
            var watch = Stopwatch.StartNew();
            trainer.Train(1);
            var seconds = watch.Elapsed.TotalSeconds;
            if (trainer.GuardEnabled)
            {
                on += seconds;
                onSteps++;
            }
            else
            {
                off += seconds;
                offSteps++;
            }
        }
        trainer.GuardEnabled = true;
        return (onSteps == 0 ? 0 : on / onSteps, offSteps == 0 ? 0 : off / offSteps);
    }

    public static double CountForwardFlopsPerImage(Modules.UNet unet, ModelConfig model)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = randn(1, model.ImageChannels, model.Height, model.Width);
        return FlopCounter.ForwardFlops(unet, () => unet.call(x, full(1, 0.5f), zeros(1, dtype: ScalarType.Int64)).Dispose());
    }
}
