using System.Diagnostics;
using static TorchSharp.torch;

namespace Islands.Diffusion.Benchmarks;

/// <summary>Measures this machine's matrix-multiply throughput (the practical hardware limit for conv/linear layers).</summary>
public static class MatmulPeak
{
    /// <summary>A single product slower than this ends the climb to larger sizes.</summary>
    private const double SlowProductSeconds = 0.5;

    /// <summary>
    /// Best of several timed rounds over growing sizes: a noisy VM's peak is its fastest sustained round. The climb stops
    /// at the first size whose single product takes longer than <see cref="SlowProductSeconds"/>: where a precision has
    /// no fast kernel (bf16 on a CPU without AVX-512 BF16 or AMX runs a generic gemm, tens of times slower than fp32),
    /// the largest sizes would otherwise take many minutes for the same answer.
    /// </summary>
    public static double GflopsPerSecond(ScalarType dtype = ScalarType.Float32)
    {
        double best = 0;
        foreach (var size in new[] { 512, 1024, 2048, 3072 })
        {
            using var scope = NewDisposeScope();
            var a = randn(size, size).to_type(dtype);
            var b = randn(size, size).to_type(dtype);
            a.matmul(b).Dispose();
            var flops = 2.0 * size * size * size;
            var once = Stopwatch.StartNew();
            a.matmul(b).Dispose();
            var seconds = once.Elapsed.TotalSeconds;
            best = Math.Max(best, flops / seconds / 1e9);
            if (seconds > SlowProductSeconds) break;
            for (var round = 0; round < 3; round++)
                best = Math.Max(best, Round(a, b, flops, 0.4));
        }
        return best;
    }

    private static double Round(Tensor a, Tensor b, double flopsPer, double seconds)
    {
        var watch = Stopwatch.StartNew();
        var count = 0;
        while (watch.Elapsed.TotalSeconds < seconds || count < 3)
        {
            a.matmul(b).Dispose();
            count++;
        }
        return flopsPer * count / watch.Elapsed.TotalSeconds / 1e9;
    }
}
