using Islands.Diffusion.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace Islands.Diffusion.Sampling;

/// <summary>
/// Integrates dx/dt = v(x, t, c) from t=1 (Gaussian noise) to t=0 with the stages of <see cref="FlowStep"/> (Euler or
/// Heun), with classifier-free guidance done as one doubled batch. Deterministic for a seed: the noise of sample i
/// depends only on the seed and i's batch.
/// </summary>
public static class FlowSampler
{
    /// <param name="classes">One class per sample, or null for unconditional (the model's null class).</param>
    public static Tensor Sample(IVelocityModel model, int count, long[]? classes, SamplerOptions options, (long C, long H, long W) shape,
        Device? device = null, Action<int, int>? progress = null)
    {
        VelocityField field = (x, t, c, _) => GuidedVelocity.Evaluate(model, x, t, c, options.Cfg);
        return Sample(field, count, classes, options, shape, device, progress);
    }

    /// <summary>Samples with any velocity field (one model, or an ensemble that routes every step); unconditional rows carry class -1.</summary>
    public static Tensor Sample(VelocityField field, int count, long[]? classes, SamplerOptions options, (long C, long H, long W) shape,
        Device? device = null, Action<int, int>? progress = null)
    {
        options.ThrowIfInvalid();
        if (classes is not null && classes.Length != count) throw new ConfigException("classes",
            $"{classes.Length} classes given for {count} samples");
        device ??= CPU;
        var batches = new List<Tensor>();
        var totalBatches = (count + options.BatchSize - 1) / options.BatchSize;
        for (var b = 0; b < totalBatches; b++)
        {
            var start = b * options.BatchSize;
            var n = Math.Min(options.BatchSize, count - start);
            using var noise = Noise(options.Seed, b, n, shape, device);
            using var c = classes is null
                ? full(n, -1L, dtype: ScalarType.Int64, device: device)
                : tensor(classes[start..(start + n)], device: device);
            var batchIndex = b;
            batches.Add(Integrate(field, noise, c, start, options,
                (step, total) => progress?.Invoke(batchIndex * total + step, totalBatches * total)));
        }
        var result = cat(batches, 0);
        foreach (var t in batches) t.Dispose();
        return result;
    }

    /// <summary>The starting noise of batch b for a seed; serving draws a request's images the same way (batch 0).</summary>
    public static Tensor Noise(long seed, int batch, long count, (long C, long H, long W) shape, Device? device = null)
    {
        using var generator = new Generator((ulong)(seed * 7919 + batch), device ?? CPU);
        return randn([count, shape.C, shape.H, shape.W], generator: generator, device: device ?? CPU);
    }

    /// <summary>Integrates one batch starting from the given noise. Returns a new tensor; the inputs are not disposed.</summary>
    public static Tensor Integrate(VelocityField field, Tensor noise, Tensor classes, int rowOffset, SamplerOptions options,
        Action<int, int>? progress = null)
    {
        using var _ = no_grad();
        var x = noise.clone();
        var dt = 1.0 / options.Steps;
        for (var i = 0; i < options.Steps; i++)
        {
            using var scope = NewDisposeScope();
            var v = field(x, FlowStep.Time(i, options.Steps, 0), classes, rowOffset);
            var next = FlowStep.HasCorrector(options.Method, i, options.Steps)
                ? FlowStep.Correct(x, v, field(FlowStep.Predict(x, v, dt), FlowStep.Time(i, options.Steps, 1), classes, rowOffset), dt)
                : FlowStep.Predict(x, v, dt);
            x.Dispose();
            x = next.MoveToOuterDisposeScope();
            progress?.Invoke(i + 1, options.Steps);
        }
        return x;
    }

    /// <summary>t for every row of x: float64 for float64 states (exact tests), float32 otherwise (bf16 models cast internally).</summary>
    public static Tensor TimeColumn(Tensor x, double t) =>
        full(x.shape[0], t, dtype: x.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32, device: x.device);
}

/// <summary>dx/dt at time t for a batch (classes -1 for unconditional); rowOffset is the batch's first sample index (for routing traces).</summary>
public delegate Tensor VelocityField(Tensor x, double t, Tensor classes, int rowOffset);
