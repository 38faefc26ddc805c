using System.Runtime.InteropServices;

namespace Islands.Diffusion.Numerics;

/// <summary>
/// The kernel paths this process computes with, chosen once by <see cref="NumericsSelfTest"/> from what this CPU gets right.
/// Every model reads <see cref="Current"/>; the first read runs the self-test if nothing ran it yet, so two processes on the
/// same CPU always take the same paths (and a seed gives the same result in both).
/// </summary>
public sealed record NumericsPolicy(string Name, bool PadConvolutionChannels, bool OneDnn, bool Bf16Trusted, bool ChannelsLast = false,
    bool ChannelsLastInference = false)
{
    /// <summary>oneDNN's widest channel block (AVX-512: 16 floats); 16 is also a multiple of the AVX2 block of 8.</summary>
    public const long ChannelBlock = 16;

    /// <summary>
    /// Training in NCHW, inference (sampling, evaluation: no autograd) in channels-last. Channels-last is oneDNN's native
    /// convolution layout (no reorder of every activation to and from its blocked format): measured 13 % faster fp32 and
    /// 6 % faster bf16 forward passes on AMD EPYC Zen 5. Training stays NCHW because GroupNorm's backward in channels-last
    /// (libtorch's kernel, or <see cref="Modules.ChannelsLastGroupNorm"/>) costs more there than the convolutions gain (README "Speed").
    /// </summary>
    public static readonly NumericsPolicy Direct = new("onednn", PadConvolutionChannels: false, OneDnn: true, Bf16Trusted: true,
        ChannelsLastInference: true);
    public static readonly NumericsPolicy PaddedChannels = new("onednn-padded-channels", PadConvolutionChannels: true, OneDnn: true,
        Bf16Trusted: true, ChannelsLastInference: true);

    /// <summary>NCHW throughout: where a CPU computes a channels-last kernel wrong but the NCHW ones right.</summary>
    public static readonly NumericsPolicy DirectNchw = new("onednn-nchw", PadConvolutionChannels: false, OneDnn: true, Bf16Trusted: true);
    public static readonly NumericsPolicy PaddedChannelsNchw = new("onednn-padded-channels-nchw", PadConvolutionChannels: true, OneDnn: true,
        Bf16Trusted: true);

    /// <summary>Channels-last throughout, training too (for comparison with bench ops --paths, or ISLANDS_KERNEL_PATHS).</summary>
    public static readonly NumericsPolicy ChannelsLastDirect = new("onednn-nhwc", PadConvolutionChannels: false, OneDnn: true, Bf16Trusted: true,
        ChannelsLast: true, ChannelsLastInference: true);
    public static readonly NumericsPolicy ChannelsLastPadded = new("onednn-nhwc-padded-channels", PadConvolutionChannels: true, OneDnn: true,
        Bf16Trusted: true, ChannelsLast: true, ChannelsLastInference: true);

    public static readonly NumericsPolicy NoOneDnn = new("native-kernels", PadConvolutionChannels: false, OneDnn: false, Bf16Trusted: true);

    /// <summary>Every path Islands knows, in the order the self-test tries them: fastest first on the CPUs measured (README "Speed").</summary>
    public static IReadOnlyList<NumericsPolicy> All { get; } =
        [Direct, PaddedChannels, DirectNchw, PaddedChannelsNchw, ChannelsLastDirect, ChannelsLastPadded, NoOneDnn];

    /// <summary>Whether activations go channels-last now: the inference layout without autograd, the training layout with it.</summary>
    public bool ChannelsLastNow => TorchSharp.torch.is_grad_enabled() ? ChannelsLast : ChannelsLastInference;

    /// <summary>Restricts the start-up choice to the named paths, in order (comma-separated), e.g. onednn-nhwc.</summary>
    public const string PathsVariable = "ISLANDS_KERNEL_PATHS";

    /// <summary>The candidates the self-test tries: <see cref="All"/>, or those <see cref="PathsVariable"/> names.</summary>
    public static IReadOnlyList<NumericsPolicy> Candidates => Parse(Environment.GetEnvironmentVariable(PathsVariable), PathsVariable);

    /// <summary>Paths by name, comma-separated; empty means all. <paramref name="source"/> names the setting in the error.</summary>
    public static IReadOnlyList<NumericsPolicy> Parse(string? text, string source)
    {
        if (string.IsNullOrWhiteSpace(text)) return All;
        return text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(name =>
            All.FirstOrDefault(p => p.Name == name) ?? throw new ConfigException(source,
                $"'{name}' is not a kernel path; known paths: {string.Join(", ", All.Select(p => p.Name))}")).ToList();
    }

    private static readonly Lock gate = new();
    private static NumericsPolicy? current;
    private static NumericsReport? report;

    [ThreadStatic] private static NumericsPolicy? trial;

    public static NumericsPolicy Current => trial ?? current ?? EnsureSelfTested().Chosen;

    /// <summary>Makes this thread's models take <paramref name="policy"/>'s paths until disposed (the self-test's trials, bench ops'
    /// comparisons).</summary>
    public static IDisposable Trial(NumericsPolicy policy)
    {
        var previous = trial;
        trial = policy;
        OneDnnSwitch.Set(policy.OneDnn);
        return new Restore(() =>
        {
            trial = previous;
            OneDnnSwitch.Set((previous ?? current ?? Direct).OneDnn);
        });
    }

    private sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }

    /// <summary>The self-test's findings for this process (running it first if needed).</summary>
    public static NumericsReport Report => report ?? EnsureSelfTested();

    /// <summary>The self-test's findings if it has run in this process (null before: reading this never starts it).</summary>
    public static NumericsReport? ReportIfTested => report;

    /// <summary>Where the self-test's one line goes; hosts may redirect it to their logger.</summary>
    public static Action<string> Log { get; set; } = line => Console.Error.WriteLine(line);

    public static NumericsReport EnsureSelfTested()
    {
        lock (gate)
        {
            if (report is not null) return report;
            var found = NumericsSelfTest.Run(NumericsFault.FromEnvironment());
            Use(found.Chosen);
            report = found;
            Log(found.Summary);
            return found;
        }
    }

    /// <summary>"bf16" when this CPU computes bf16 right on the chosen path, else "fp32"; other values pass through.</summary>
    /// <summary>bf16 where it is trusted and computed in hardware, else fp32 (bf16 on generic kernels is tens of times slower).</summary>
    public static string FastestPrecision() => Current.Bf16Trusted && CpuInfo.Bf16NativeHere() ? "bf16" : "fp32";

    public static string EffectivePrecision(string requested) => requested == "bf16" && !Current.Bf16Trusted ? "fp32" : requested;

    internal static void Use(NumericsPolicy policy)
    {
        OneDnnSwitch.Set(policy.OneDnn);
        current = policy;
    }
}

/// <summary>libtorch's process-wide "use oneDNN" flag (at::globalContext().setUserEnabledMkldnn), which TorchSharp does not expose.</summary>
internal static partial class OneDnnSwitch
{
    private const string Library = "libtorch_cpu.so";

    [LibraryImport(Library, EntryPoint = "_ZN2at13globalContextEv")]
    private static partial IntPtr GlobalContext();

    [LibraryImport(Library, EntryPoint = "_ZN2at7Context20setUserEnabledMkldnnEb")]
    private static partial void SetUserEnabledMkldnn(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);

    [LibraryImport(Library, EntryPoint = "_ZNK2at7Context17userEnabledMkldnnEv")]
    [return: MarshalAs(UnmanagedType.U1)]
    private static partial bool UserEnabledMkldnn(IntPtr context);

    public static bool Available { get; } = Probe();

    public static void Set(bool enabled)
    {
        if (!Available)
        {
            if (!enabled)
                throw new IslandsException("numerics: cannot turn oneDNN off: libtorch_cpu does not export at::Context::setUserEnabledMkldnn");
            return;
        }
        _ = TorchSharp.torch.get_num_threads(); // makes sure TorchSharp has loaded libtorch before the first direct call
        SetUserEnabledMkldnn(GlobalContext(), enabled);
    }

    private static bool Probe()
    {
        try
        {
            _ = TorchSharp.torch.get_num_threads();
            _ = UserEnabledMkldnn(GlobalContext()); // resolves the entry points; the value itself does not matter
            return true;
        }
        catch (DllNotFoundException) { return false; }
        catch (EntryPointNotFoundException) { return false; }
    }
}
