using System.Runtime.InteropServices;
using TorchSharp;

namespace Islands.Diffusion.Runtime;

/// <summary>Process-wide libtorch settings: threads, device choice, and the allocator behaviour (see notes on trap 3).</summary>
public static class TorchSetup
{
    private static int initialised;

    /// <summary>Call once before any tensor work. threads = 0 uses every core. Runs the numerics self-test (once per process).</summary>
    public static void Initialise(int threads = 0)
    {
        if (Interlocked.Exchange(ref initialised, 1) == 0) MallocTuning.Apply();
        var n = threads > 0 ? threads : Environment.ProcessorCount;
        if (torch.get_num_threads() != n) torch.set_num_threads(n);
        Numerics.NumericsPolicy.EnsureSelfTested();
    }

    /// <summary>
    /// Sets libtorch's intra-op threads for the calling thread only: with OpenMP the count is per thread, so a worker on
    /// its own thread otherwise uses every core however many workers share them.
    /// </summary>
    public static void SetThreadsOfCurrentThread(int threads) => torch.set_num_threads(Math.Max(1, threads));

    public static torch.Device ResolveDevice(string device) => device switch
    {
        "cpu" => torch.CPU,
        "cuda" => torch.cuda.is_available() ? torch.CUDA : throw new ConfigException("device",
            "cuda was requested but no CUDA device is available (this build uses TorchSharp-cpu unless built with -p:IslandsGpu=true)"),
        "auto" => torch.cuda.is_available() ? torch.CUDA : torch.CPU,
        _ => throw new ConfigException("device", $"'{device}' must be auto, cpu or cuda"),
    };

    /// <summary>Resident set size of this process in bytes, from /proc/self/statm (Linux); falls back to the GC's working set.</summary>
    public static long ResidentBytes()
    {
        try
        {
            if (RuntimeInformation.IsOSPlatform(OSPlatform.Linux))
            {
                var fields = File.ReadAllText("/proc/self/statm").Split(' ');
                return long.Parse(fields[1], System.Globalization.CultureInfo.InvariantCulture) * Environment.SystemPageSize;
            }
        }
        catch (IOException) { }
        return Environment.WorkingSet;
    }
}
