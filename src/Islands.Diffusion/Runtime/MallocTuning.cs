using System.Runtime.InteropServices;

namespace Islands.Diffusion.Runtime;

/// <summary>
/// glibc malloc settings that keep resident memory flat under libtorch's allocation pattern (many short-lived
/// activation buffers of a few hundred KB to a few MB, freed from several threads). Chosen by measurement; see
/// README "Memory". ISLANDS_MALLOC=default leaves glibc untouched.
/// </summary>
public static partial class MallocTuning
{
    private const int M_TRIM_THRESHOLD = -1;
    private const int M_MMAP_THRESHOLD = -3;
    private const int M_ARENA_MAX = -8;

    public static string Mode { get; private set; } = "unset";

    [LibraryImport("libc", EntryPoint = "mallopt")]
    private static partial int Mallopt(int param, int value);

    public static void Apply()
    {
        var mode = Environment.GetEnvironmentVariable("ISLANDS_MALLOC") ?? "arenas";
        Mode = mode;
        if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux) || mode == "default") return;
        try
        {
            switch (mode)
            {
                case "arenas":
                    // Fixed thresholds stop glibc's dynamic mmap threshold from climbing, which otherwise moves every
                    // large activation onto fragmenting heaps; two arenas stop per-thread arenas from each hoarding memory.
                    Mallopt(M_ARENA_MAX, 2);
                    Mallopt(M_MMAP_THRESHOLD, 64 << 20);
                    Mallopt(M_TRIM_THRESHOLD, 128 << 20);
                    break;
                case "mmap":
                    Mallopt(M_MMAP_THRESHOLD, 128 << 10);
                    Mallopt(M_TRIM_THRESHOLD, 128 << 10);
                    break;
                default:
                    throw new ConfigException("ISLANDS_MALLOC", $"'{mode}' must be arenas, mmap or default");
            }
        }
        catch (DllNotFoundException) { Mode = "unavailable"; }
        catch (EntryPointNotFoundException) { Mode = "unavailable"; }
    }
}
