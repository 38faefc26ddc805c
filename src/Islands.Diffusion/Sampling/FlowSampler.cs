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
            var noise = randn([n, shape.C, shape.H, shape.W], generator: generator, device: device);
            var c = classes is null
                ? full(n, model.NullClass, dtype: ScalarType.Int64, device: device)
                : tensor(classes[start..(start + n)], device: device);
            batches.Add(Integrate(model, noise, c, classes is not null, options, (step, total) => progress?.Invoke(b * total + step, totalBatches * total)));
            noise.Dispose();
        }
        var result = cat(batches, 0);
        foreach (var t in batches) t.Dispose();
        return result;
    }

    /// <summary>Integrates one batch starting from the given noise. Returns a new tensor; the inputs are not disposed.</summary>
    public static Tensor Integrate(IVelocityModel model, Tensor noise, Tensor classes, bool conditional, SamplerOptions options, Action<int, int>? progress = null)
    {
        using var _ = no_grad();
        var x = noise.clone();
        var dt = 1.0 / options.Steps;
        for (var i = 0; i < options.Steps; i++)
        {
            using var scope = NewDisposeScope();
            var t = 1.0 - i * dt;
            var v = Velocity(model, x, t, classes, conditional, options.Cfg);
            Tensor next;
            if (options.Method == "heun" && i < options.Steps - 1)
            {
                var predicted = x - dt * v;
                var v2 = Velocity(model, predicted, t - dt, classes, conditional, options.Cfg);
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

    /// <summary>The (guided) velocity at a single time t for a whole batch.</summary>
    public static Tensor Velocity(IVelocityModel model, Tensor x, double t, Tensor classes, bool conditional, double cfg)
    {
        using var scope = NewDisposeScope();
        var n = x.shape[0];
        var tt = full(n, (float)t, device: x.device);
        if (!conditional || cfg == 1.0) return model.Velocity(x, tt, classes).MoveToOuterDisposeScope();
        var both = model.Velocity(cat([x, x], 0), cat([tt, tt], 0), cat([classes, full_like(classes, model.NullClass)], 0));
        var vc = both[..(int)n];
        var vu = both[(int)n..];
        return (vu + cfg * (vc - vu)).MoveToOuterDisposeScope();
    }
}
