using System.Diagnostics;
using static TorchSharp.torch;

namespace Islands.Diffusion.Benchmarks;

/// <summary>Measures this machine's matrix-multiply throughput (the practical hardware limit for conv/linear layers).</summary>
public static class MatmulPeak
{
    public static double GflopsPerSecond(ScalarType dtype = ScalarType.Float32, int size = 2048, double seconds = 1.5)
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
