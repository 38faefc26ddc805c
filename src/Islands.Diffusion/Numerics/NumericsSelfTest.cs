using System.Diagnostics;
using Islands.Diffusion.Modules;
using TorchSharp;
using static TorchSharp.torch;

namespace Islands.Diffusion.Numerics;

/// <summary>
/// Known-answer self-test of the kernels the models use (convolutions with full and partial channel blocks, strided and
/// 1x1 convolutions, GroupNorm, linear, a whole ResBlock), inference, training forward and backward, in fp32 and bf16, against the same
/// computation in fp64 (which libtorch runs on its native kernels: oneDNN has none for fp64). Before each check the heap
/// is filled with NaN-holding buffers, so a kernel that reads memory it never wrote fails every time instead of by luck.
/// Candidates are tried fastest first; the first on which fp32 and bf16 pass is chosen, else the first on which fp32
/// passes (bf16 then computes in fp32).
/// </summary>
public static class NumericsSelfTest
{
    public const double Fp32Tolerance = 1e-4;
    public const double Bf16Tolerance = 5e-2;

    private sealed record Case(string Name, Func<nn.Module> Build, long[] InputShape, bool InputNeedsGrad, bool WithEmbedding = false);

    private static readonly Case[] Cases =
    [
        new("conv3x3-32to1", () => new PaddedConv2d(32, 1, 3, padding: 1), [4, 32, 12, 12], true),
        new("conv3x3-1to32", () => new PaddedConv2d(1, 32, 3, padding: 1), [4, 1, 12, 12], true),
        new("conv3x3-3to24", () => new PaddedConv2d(3, 24, 3, padding: 1), [4, 3, 12, 12], true),
        new("conv3x3-24to16", () => new PaddedConv2d(24, 16, 3, padding: 1), [4, 24, 12, 12], true),
        new("conv3x3-8to8", () => new PaddedConv2d(8, 8, 3, padding: 1), [4, 8, 12, 12], false),
        new("conv3x3-32to32-stride2", () => new PaddedConv2d(32, 32, 3, stride: 2, padding: 1), [4, 32, 12, 12], true),
        new("conv1x1-48to32", () => new PaddedConv2d(48, 32, 1), [4, 48, 8, 8], true),
        new("groupnorm-8x32", () => new GroupNorm32(8, 32), [4, 32, 8, 8], true),
        new("linear-128to4", () => nn.Linear(128, 4), [16, 128], true),
        new("resblock-32to64", () => new ResBlock(32, 64, 32, 8), [4, 32, 12, 12], true, WithEmbedding: true),
    ];

    public static NumericsReport Run(NumericsFault? fault = null, IReadOnlyList<NumericsPolicy>? candidates = null)
    {
        var watch = Stopwatch.StartNew();
        var checks = new List<NumericsCheck>();
        NumericsPolicy? chosen = null, fp32Only = null;
        foreach (var candidate in candidates ?? NumericsPolicy.Candidates)
        {
            if (!candidate.OneDnn && !OneDnnSwitch.Available) continue;
            bool fp32Ok, bf16Ok;
            using (NumericsPolicy.Trial(candidate))
            {
                var fp32 = RunAll(candidate, ScalarType.Float32, fault);
                var bf16 = RunAll(candidate, ScalarType.BFloat16, fault);
                checks.AddRange(fp32);
                checks.AddRange(bf16);
                fp32Ok = fp32.All(c => c.Passed);
                bf16Ok = bf16.All(c => c.Passed);
            }
            if (fp32Ok && bf16Ok) { chosen = candidate; break; }
            if (fp32Ok) fp32Only ??= candidate with { Bf16Trusted = false };
        }
        chosen ??= fp32Only;
        var (cpu, features) = CpuInfo.Read();
        var report = new NumericsReport(cpu, features, chosen ?? NumericsPolicy.NoOneDnn, checks, watch.Elapsed.TotalSeconds, fault?.ToString());
        if (chosen is null)
            throw new NumericsException($"{report.Summary}: no kernel path computes fp32 correctly on this CPU; refusing to train or sample");
        return report;
    }

    private static List<NumericsCheck> RunAll(NumericsPolicy policy, ScalarType dtype, NumericsFault? fault)
    {
        var precision = dtype == ScalarType.BFloat16 ? "bf16" : "fp32";
        var tolerance = dtype == ScalarType.BFloat16 ? Bf16Tolerance : Fp32Tolerance;
        var results = new List<NumericsCheck>();
        foreach (var c in Cases)
        {
            var corrupt = fault?.Matches(policy.Name, precision, c.Name) == true;
            results.Add(new NumericsCheck(policy.Name, c.Name, precision, RelativeError(c, dtype, corrupt), tolerance));
        }
        return results;
    }

    /// <summary>max |result - reference| / max |reference| over the output and every gradient (input, embedding, parameters).</summary>
    private static double RelativeError(Case c, ScalarType dtype, bool corrupt)
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator(20261201);
        var previous = random.get_rng_state();
        random.manual_seed(7);
        using var module = c.Build();
        using var reference = c.Build();
        random.set_rng_state(previous);
        module.to(dtype);
        using (no_grad())
        {
            // The reference gets the very weights the tested module holds (already rounded to dtype), in fp64.
            foreach (var (p, r) in module.parameters().Zip(reference.parameters())) r.copy_(p.to_type(ScalarType.Float32));
        }
        reference.to(ScalarType.Float64);

        var x = randn(c.InputShape, generator: generator).to_type(dtype);
        if (NumericsPolicy.Current.ChannelsLast) x = MemoryLayout.ChannelsLast(x);
        var emb = randn([c.InputShape[0], 32], generator: generator).to_type(dtype);
        var xr = x.to_type(ScalarType.Float64).requires_grad_(c.InputNeedsGrad);
        var er = emb.to_type(ScalarType.Float64).requires_grad_(c.WithEmbedding);
        var yr = Forward(reference, xr, er, c);
        var cotangent = randn(yr.shape, generator: generator).to_type(dtype);
        yr.backward([cotangent.to_type(ScalarType.Float64)]);

        Poison();
        var xt = x.clone().requires_grad_(c.InputNeedsGrad);
        var et = emb.clone().requires_grad_(c.WithEmbedding);
        var yt = Forward(module, xt, et, c);
        Poison();
        yt.backward([cotangent]);

        Tensor inference;
        using (no_grad())
        {
            // Inference may take other kernels than training (oneDNN's forward_inference), so it is checked on its own.
            Poison();
            inference = Forward(module, NumericsPolicy.Current.ChannelsLastInference ? MemoryLayout.ChannelsLast(x) : x, emb, c);
        }

        var pairs = new List<(Tensor Result, Tensor Reference)> { (yt, yr), (inference, yr) };
        if (c.InputNeedsGrad) pairs.Add((xt.grad!, xr.grad!));
        if (c.WithEmbedding) pairs.Add((et.grad!, er.grad!));
        pairs.AddRange(module.parameters().Zip(reference.parameters()).Select(p => (p.First.grad!, p.Second.grad!)));
        var worst = 0.0;
        foreach (var (result, expected) in pairs)
        {
            var r = result.to_type(ScalarType.Float64);
            if (corrupt) r = r + double.NaN;
            var scale = Math.Max(expected.abs().max().item<double>(), 1e-12);
            var error = (r - expected).abs().max().item<double>() / scale;
            if (!double.IsFinite(error)) return double.NaN;
            worst = Math.Max(worst, error);
        }
        return worst;
    }

    private static Tensor Forward(nn.Module module, Tensor x, Tensor emb, Case c) => module switch
    {
        ResBlock block => block.call(x, emb),
        nn.Module<Tensor, Tensor> plain => plain.call(x),
        _ => throw new InvalidOperationException($"self-test case {c.Name}: unsupported module {module.GetType().Name}"),
    };

    /// <summary>Fills recently freed heap memory with NaN so that reads of uninitialised memory show up as NaN.</summary>
    public static void Poison()
    {
        using var scope = NewDisposeScope();
        for (long size = 1 << 10; size <= 1 << 20; size <<= 2)
        {
            full(size, float.NaN).Dispose();
            full(size, float.NaN, dtype: ScalarType.BFloat16).Dispose();
        }
    }
}

/// <summary>This CPU computes wrong results on every kernel path Islands knows.</summary>
public sealed class NumericsException(string message) : IslandsException(message);
