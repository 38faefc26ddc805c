using Islands.Diffusion.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace Islands.Diffusion.Sampling;

/// <summary>
/// Integrates dx/dt = v(x, t, c) from t=1 (Gaussian noise) to t=0 with Euler or Heun steps, with classifier-free
/// guidance done as one doubled batch. Deterministic for a seed: the noise of sample i depends only on the seed and i's batch.
/// </summary>
public static class FlowSampler
{
    /// <param name="classes">One class per sample, or null for unconditional (the model's null class).</param>
    public static Tensor Sample(IVelocityModel model, int count, long[]? classes, SamplerOptions options, (long C, long H, long W) shape,
        Device? device = null, Action<int, int>? progress = null)
    {
        var conditional = classes is not null;
        VelocityField field = (x, t, c, _) => Velocity(model, x, t, c, conditional, options.Cfg);
        return Sample(field, count, classes, model.NullClass, options, shape, device, progress);
    }

    /// <summary>Samples with any velocity field (one model, or an ensemble that routes every step).</summary>
    public static Tensor Sample(VelocityField field, int count, long[]? classes, long nullClass, SamplerOptions options, (long C, long H, long W) shape,
        Device? device = null, Action<int, int>? progress = null)
    {
        options.ThrowIfInvalid();
        if (classes is not null && classes.Length != count) throw new ConfigException("--class", $"{classes.Length} classes given for {count} samples");
        device ??= CPU;
        var batches = new List<Tensor>();
        var totalBatches = (count + options.BatchSize - 1) / options.BatchSize;
        for (var b = 0; b < totalBatches; b++)
        {
            var start = b * options.BatchSize;
            var n = Math.Min(options.BatchSize, count - start);
            using var generator = new Generator((ulong)(options.Seed * 7919 + b), device);
            using var noise = randn([n, shape.C, shape.H, shape.W], generator: generator, device: device);
            using var c = classes is null
                ? full(n, nullClass, dtype: ScalarType.Int64, device: device)
                : tensor(classes[start..(start + n)], device: device);
            var batchIndex = b;
            batches.Add(Integrate(field, noise, c, start, options, (step, total) => progress?.Invoke(batchIndex * total + step, totalBatches * total)));
        }
        var result = cat(batches, 0);
        foreach (var t in batches) t.Dispose();
        return result;
    }

    /// <summary>Integrates one batch starting from the given noise. Returns a new tensor; the inputs are not disposed.</summary>
    public static Tensor Integrate(VelocityField field, Tensor noise, Tensor classes, int rowOffset, SamplerOptions options, Action<int, int>? progress = null)
    {
        using var _ = no_grad();
        var x = noise.clone();
        var dt = 1.0 / options.Steps;
        for (var i = 0; i < options.Steps; i++)
        {
            using var scope = NewDisposeScope();
            var t = 1.0 - i * dt;
            var v = field(x, t, classes, rowOffset);
            Tensor next;
            if (options.Method == "heun" && i < options.Steps - 1)
            {
                var predicted = x - dt * v;
                var v2 = field(predicted, t - dt, classes, rowOffset);
                next = x - dt * 0.5 * (v + v2);
            }
            else
            {
                next = x - dt * v;
            }
            x.Dispose();
            x = next.MoveToOuterDisposeScope();
            progress?.Invoke(i + 1, options.Steps);
        }
        return x;
    }

    /// <summary>t for every row of x: float64 for float64 states (exact tests), float32 otherwise (bf16 models cast internally).</summary>
    public static Tensor TimeColumn(Tensor x, double t) =>
        full(x.shape[0], t, dtype: x.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32, device: x.device);

    /// <summary>The (guided) velocity of one model at a single time t for a whole batch; both guidance branches run as one batch.</summary>
    public static Tensor Velocity(IVelocityModel model, Tensor x, double t, Tensor classes, bool conditional, double cfg)
    {
        using var scope = NewDisposeScope();
        var n = x.shape[0];
        var tt = TimeColumn(x, t);
        if (!conditional || cfg == 1.0) return model.Velocity(x, tt, classes).MoveToOuterDisposeScope();
        var both = model.Velocity(cat([x, x], 0), cat([tt, tt], 0), cat([classes, full_like(classes, model.NullClass)], 0));
        var vc = both[..(int)n];
        var vu = both[(int)n..];
        return (vu + cfg * (vc - vu)).MoveToOuterDisposeScope();
    }
}

/// <summary>dx/dt at time t for a batch; rowOffset is the batch's first sample index (for routing traces).</summary>
public delegate Tensor VelocityField(Tensor x, double t, Tensor classes, int rowOffset);
