using System.Diagnostics;
using static TorchSharp.torch;

namespace Islands.Diffusion.Benchmarks;

/// <summary>Measures this machine's matrix-multiply throughput (the practical hardware limit for conv/linear layers).</summary>
public static class MatmulPeak
{
    /// <summary>Best of several timed rounds over two sizes: a noisy VM's peak is its fastest sustained round.</summary>
    public static double GflopsPerSecond(ScalarType dtype = ScalarType.Float32)
    {
        double best = 0;
        foreach (var size in new[] { 2048, 3072 })
            for (var round = 0; round < 3; round++)
                best = Math.Max(best, Round(dtype, size, 0.4));
        return best;
    }

    private static double Round(ScalarType dtype, int size, double seconds)
    {
        using var scope = NewDisposeScope();
        var a = randn(size, size).to_type(dtype);
        var b = randn(size, size).to_type(dtype);
        a.matmul(b).Dispose();
        var flopsPer = 2.0 * size * size * size;
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
