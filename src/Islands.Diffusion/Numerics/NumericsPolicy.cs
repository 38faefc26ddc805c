using System.Runtime.InteropServices;

namespace Islands.Diffusion.Numerics;

/// <summary>
/// The kernel paths this process computes with, chosen once by <see cref="NumericsSelfTest"/> from what this CPU gets right.
/// Every model reads <see cref="Current"/>; the first read runs the self-test if nothing ran it yet, so two processes on the
/// same CPU always take the same paths (and a seed gives the same result in both).
/// </summary>
public sealed record NumericsPolicy(string Name, bool PadConvolutionChannels, bool OneDnn, bool Bf16Trusted)
{
    /// <summary>oneDNN's widest channel block (AVX-512: 16 floats); 16 is also a multiple of the AVX2 block of 8.</summary>
    public const long ChannelBlock = 16;

    public static readonly NumericsPolicy Direct = new("onednn", PadConvolutionChannels: false, OneDnn: true, Bf16Trusted: true);
    public static readonly NumericsPolicy PaddedChannels = new("onednn-padded-channels", PadConvolutionChannels: true, OneDnn: true, Bf16Trusted: true);
    public static readonly NumericsPolicy NoOneDnn = new("native-kernels", PadConvolutionChannels: false, OneDnn: false, Bf16Trusted: true);

    /// <summary>The candidates in the order the self-test tries them: fastest first.</summary>
    public static IReadOnlyList<NumericsPolicy> Candidates { get; } = [Direct, PaddedChannels, NoOneDnn];

    private static readonly Lock gate = new();
    private static NumericsPolicy? current;
    private static NumericsReport? report;

    [ThreadStatic] private static NumericsPolicy? trial;

    public static NumericsPolicy Current => trial ?? current ?? EnsureSelfTested().Chosen;

    /// <summary>Makes this thread's models take <paramref name="policy"/>'s paths until disposed (the self-test's trials).</summary>
    internal static IDisposable Trial(NumericsPolicy policy)
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
            if (!enabled) throw new IslandsException("numerics: cannot turn oneDNN off: libtorch_cpu does not export at::Context::setUserEnabledMkldnn");
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
