using System.Diagnostics;
using Islands.Diffusion.Configs;
using Islands.Diffusion.Modules;
using Islands.Diffusion.Numerics;
using Islands.Diffusion.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Islands.Diffusion.Benchmarks;

/// <summary>One kind of operation of the model at one shape: how often a training step runs it and what each run costs.</summary>
public sealed record OpTiming(string Operation, string Shape, int PerStep, double ForwardMs, double BackwardMs)
{
    public double StepMs => PerStep * (ForwardMs + BackwardMs);
}

public sealed record StepPhase(string Phase, double Milliseconds);

/// <summary>What bench ops found for one precision on one kernel path.</summary>
public sealed record OpBenchmarkResult(
    string Precision,
    string Path,
    int Batch,
    int Threads,
    IReadOnlyList<OpTiming> Ops,
    IReadOnlyList<StepPhase> Phases,
    double StepMs,
    double ImagesPerSecond,
    double NativeCallMicroseconds,
    int ParameterTensors)
{
    /// <summary>The step's forward and backward as measured whole, minus the listed operations: element-wise adds, cat, upsampling, loss, autograd
    /// bookkeeping.</summary>
    public double UnlistedForwardBackwardMs => Phases.Where(p => p.Phase is "forward and loss" or "backward")
        .Sum(p => p.Milliseconds) - Ops.Sum(o => o.StepMs);
}

/// <summary>
/// Where a training step's time goes: every convolution, GroupNorm, SiLU and linear layer of the model at the shapes a
/// step gives it (found by running the model once with hooks), forward and backward, each timed alone; then the real
/// step of <see cref="ExpertTrainer"/> split into its phases (forward, backward, optimizer, EMA, ...), and the cost of one
/// .NET-to-native call. Several kernel paths are measured in alternation, op by op and step by step, so that the drift
/// of a shared machine's speed hits each alike and their ratio holds.
/// </summary>
public static class OpBenchmark
{
    public static IReadOnlyList<OpBenchmarkResult> Run(ModelConfig model, int batch, string precision, IReadOnlyList<NumericsPolicy> paths,
        int steps = 6, double secondsPerOp = 0.15)
    {
        var dtype = precision == "bf16" ? ScalarType.BFloat16 : ScalarType.Float32;
        var ops = TimeLayers(model, batch, dtype, paths, secondsPerOp);
        var profiles = ProfileStep(model, batch, precision, paths, steps);
        int parameterTensors;
        using (var counted = model.Build()) parameterTensors = counted.parameters().Count();
        return paths.Select((path, i) =>
        {
            using var trial = NumericsPolicy.Trial(path);
            var (phases, stepMs) = profiles[i];
            return new OpBenchmarkResult(precision, path.Name, batch, get_num_threads(), ops[i], phases, stepMs, batch / (stepMs / 1e3),
                NativeCallMicroseconds(), parameterTensors);
        }).ToList();
    }

    private sealed record Layer(string Operation, string Shape, long[] InputShape, nn.Module<Tensor, Tensor> Module);

    private static List<OpTiming>[] TimeLayers(ModelConfig model, int batch, ScalarType dtype, IReadOnlyList<NumericsPolicy> paths,
        double secondsPerOp)
    {
        using var unet = model.Build();
        unet.to(dtype);
        var layers = new List<Layer>();
        var removers = new List<Action>();
        foreach (var (_, module) in unet.named_modules())
        {
            if (module is not (PaddedConv2d or GroupNorm32 or Linear)) continue;
            var typed = (nn.Module<Tensor, Tensor>)module;
            var hook = typed.register_forward_hook((m, input, output) =>
            {
                layers.Add(Describe(m, input.shape));
                return output;
            });
            removers.Add(() => hook.remove());
        }
        using (no_grad())
        using (var scope = NewDisposeScope())
        {
            var x = randn(batch, model.ImageChannels, model.Height, model.Width).to_type(dtype);
            unet.call(x, full(batch, 0.5f), zeros(batch, dtype: ScalarType.Int64));
        }
        foreach (var remove in removers) remove();

        // Every GroupNorm of the model feeds a SiLU of its shape; the time MLP's SiLU is too small to list.
        using var silu = nn.SiLU();
        foreach (var norm in layers.Where(l => l.Operation == "groupnorm").ToList())
            layers.Add(norm with { Operation = "silu", Module = silu });

        var results = paths.Select(_ => new List<OpTiming>()).ToArray();
        foreach (var group in layers.GroupBy(l => (l.Operation, l.Shape)))
        {
            var best = paths.Select(_ => (Forward: double.MaxValue, WithAutograd: double.MaxValue, ForwardBackward: double.MaxValue)).ToArray();
            for (var round = 0; round < 3; round++)
            {
                for (var i = 0; i < paths.Count; i++)
                {
                    using var trial = NumericsPolicy.Trial(paths[i]);
                    var (f, a, fb) = TimeLayer(group.First(), dtype, secondsPerOp / 3);
                    best[i] = (Math.Min(best[i].Forward, f), Math.Min(best[i].WithAutograd, a), Math.Min(best[i].ForwardBackward, fb));
                }
            }
            for (var i = 0; i < paths.Count; i++)
                results[i].Add(new OpTiming(group.Key.Operation, group.Key.Shape, group.Count(), best[i].Forward,
                    Math.Max(0, best[i].ForwardBackward - best[i].WithAutograd)));
        }
        return results;
    }

    private static Layer Describe(nn.Module<Tensor, Tensor> module, long[] input)
    {
        var at = input.Length == 4 ? $" @{input[2]}x{input[3]}" : "";
        return module switch
        {
            PaddedConv2d c => new Layer("conv",
                $"{c.KernelSize}x{c.KernelSize} {c.InChannels}->{c.OutChannels}{(c.Stride > 1 ? $" stride {c.Stride}" : "")}{at}", input, c),
            GroupNorm32 n => new Layer("groupnorm", $"{input[1]} channels{at}", input, n),
            Linear l => new Layer("linear", $"{l.weight!.shape[1]}->{l.weight.shape[0]}", input, l),
            _ => throw new InvalidOperationException(module.GetType().Name),
        };
    }

    /// <summary>
    /// Milliseconds of one forward without autograd (as sampling runs it), one with autograd, and one forward and backward:
    /// training's backward is the difference of the last two.
    /// </summary>
    private static (double Forward, double WithAutograd, double ForwardBackward) TimeLayer(Layer layer, ScalarType dtype, double seconds)
    {
        using var scope = NewDisposeScope();
        var x = randn(layer.InputShape).to_type(dtype);
        if (NumericsPolicy.Current.ChannelsLastNow) x = MemoryLayout.ChannelsLast(x);
        double forward;
        using (no_grad()) forward = Milliseconds(() => layer.Module.call(x).Dispose(), seconds);
        x.requires_grad_(true);
        var parameters = layer.Module.parameters().ToArray();
        Tensor cotangent;
        using (var probe = NewDisposeScope()) cotangent = randn_like(layer.Module.call(x)).MoveToOuterDisposeScope();
        var withAutograd = Milliseconds(() =>
        {
            using var step = NewDisposeScope();
            layer.Module.call(x);
        }, seconds);
        var forwardBackward = Milliseconds(() =>
        {
            using var step = NewDisposeScope();
            x.grad = null;
            foreach (var p in parameters) p.grad = null;
            layer.Module.call(x).backward([cotangent]);
        }, seconds);
        return (forward, withAutograd, forwardBackward);
    }

    /// <summary>Mean milliseconds of a run over at least <paramref name="seconds"/> (and two runs), after one untimed run.</summary>
    private static double Milliseconds(Action run, double seconds)
    {
        run();
        var watch = Stopwatch.StartNew();
        var count = 0;
        while (count < 2 || watch.Elapsed.TotalSeconds < seconds)
        {
            run();
            count++;
        }
        return watch.Elapsed.TotalMilliseconds / count;
    }

    /// <summary>One trainer, its steps taken by each path in turn, each path's phases charged to its own profile.</summary>
    private static (List<StepPhase> Phases, double StepMs)[] ProfileStep(ModelConfig model, int batch, string precision,
        IReadOnlyList<NumericsPolicy> paths, int steps)
    {
        var config = new TrainConfig(DataDirectory: "(synthetic)", Model: model, Steps: (steps + 1) * paths.Count, BatchSize: batch,
            Precision: precision, WarmupSteps: 0);
        var n = Math.Max(batch * 4, 1024);
        var images = rand(n, model.ImageChannels, model.Height, model.Width) * 2 - 1;
        var labels = randint(0, Math.Max(1, model.ClassCount), [n]);
        using var trainer = new ExpertTrainer(config, images, labels);
        var profiles = paths.Select(_ => new StepProfile()).ToArray();
        var seconds = new double[paths.Count];
        for (var step = 0; step <= steps; step++)
        {
            for (var i = 0; i < paths.Count; i++)
            {
                using var trial = NumericsPolicy.Trial(paths[i]);
                trainer.Profile = step == 0 ? null : profiles[i];
                var watch = Stopwatch.StartNew();
                trainer.Train(1);
                if (step > 0) seconds[i] += watch.Elapsed.TotalSeconds;
            }
        }
        return paths.Select((_, i) =>
        {
            var stepMs = seconds[i] * 1e3 / steps;
            var phases = profiles[i].MeanMilliseconds().Select(p => new StepPhase(p.Phase, p.Milliseconds)).ToList();
            phases.Add(new StepPhase("between phases (loop, scope disposal)", stepMs - phases.Sum(p => p.Milliseconds)));
            return (phases, stepMs);
        }).ToArray();
    }

    /// <summary>Microseconds of one in-place add on a one-element tensor: the fixed price of each native call, which every small op pays.</summary>
    private static double NativeCallMicroseconds()
    {
        using var tiny = zeros(1);
        return Milliseconds(() => tiny.add_(1.0), 0.1) * 1e3;
    }
}
