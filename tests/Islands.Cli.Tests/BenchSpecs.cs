using System.Text.Json;
using Islands.Diffusion.Configs;
using Islands.Diffusion.Modules;
using Islands.Diffusion.Numerics;

namespace Islands.Cli.Tests;

/// <summary>bench ops and bench sample --paths through the CLI: real measurements of the real model, not their shape only.</summary>
public sealed class BenchSpecs
{
    [Fact]
    public void Should_time_every_layer_of_the_model_and_the_phases_of_the_real_step()
    {
        var run = CliRunner.RunProcess("bench", "ops", "--batch", "8", "--steps", "2", "--precision", "fp32", "--op-seconds", "0.01", "--threads", "2", "--json");
        Assert.True(run.ExitCode == 0, run.Stderr);
        var result = run.Json.GetProperty("results").EnumerateArray().Single();
        Assert.Equal(run.Json.GetProperty("numerics").GetProperty("path").GetString(), result.GetProperty("path").GetString());
        var ops = result.GetProperty("ops").EnumerateArray().ToList();
        Assert.Equal(["conv", "groupnorm", "linear", "silu"], ops.Select(o => o.GetProperty("operation").GetString()).Distinct().Order());
        foreach (var op in ops)
        {
            var forward = op.GetProperty("forwardMs").GetDouble();
            Assert.True(double.IsFinite(forward) && forward > 0, $"{op}");
            Assert.True(op.GetProperty("backwardMs").GetDouble() >= 0, $"{op}");
        }
        // Every convolution and GroupNorm of the model is counted once per step.
        using var unet = new ModelConfig().Build();
        var modules = unet.named_modules().Select(m => m.module).ToList();
        Assert.Equal(modules.Count(m => m is PaddedConv2d), ops.Where(o => o.GetProperty("operation").GetString() == "conv").Sum(o => o.GetProperty("perStep").GetInt32()));
        Assert.Equal(modules.Count(m => m is GroupNorm32), ops.Where(o => o.GetProperty("operation").GetString() == "groupnorm").Sum(o => o.GetProperty("perStep").GetInt32()));

        var phases = result.GetProperty("phases").EnumerateArray().ToDictionary(p => p.GetProperty("phase").GetString()!, p => p.GetProperty("milliseconds").GetDouble());
        foreach (var phase in new[] { "batch and noise", "forward and loss", "backward", "clip and guard", "optimizer", "ema" })
            Assert.True(phases.TryGetValue(phase, out var ms) && double.IsFinite(ms) && ms >= 0, $"phase {phase} missing or not a time: {string.Join(", ", phases.Keys)}");
        var step = result.GetProperty("stepMs").GetDouble();
        Assert.True(phases["forward and loss"] > 0 && phases["backward"] > 0 && phases.Values.Sum() <= step * 1.01 + 0.5, $"phases {phases.Values.Sum()} ms vs step {step} ms");
        Assert.True(result.GetProperty("nativeCallMicroseconds").GetDouble() > 0);
    }

    [Fact]
    public void Should_compare_kernel_paths_in_alternation_and_refuse_unknown_ones()
    {
        // The padded paths: the unpadded ones are refused on CPUs with oneDNN's partial-channel-block fault (some AMD EPYC hosts).
        var run = CliRunner.RunProcess("bench", "sample", "--paths", "onednn-padded-channels-nchw,onednn-padded-channels", "--count", "4", "--steps", "2", "--rounds", "1", "--threads", "2", "--json");
        Assert.True(run.ExitCode == 0, run.Stderr);
        var rows = run.Json.GetProperty("paths").EnumerateArray().ToList();
        Assert.Equal(4, rows.Count);
        Assert.Equal(["onednn-padded-channels-nchw", "onednn-padded-channels", "onednn-padded-channels-nchw", "onednn-padded-channels"], rows.Select(r => r.GetProperty("path").GetString()));
        Assert.All(rows, r => Assert.True(r.GetProperty("median").GetDouble() is var v && double.IsFinite(v) && v > 0, r.ToString()));

        var unknown = CliRunner.RunProcess("bench", "ops", "--paths", "onednn,fastest", "--threads", "2");
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("--paths: 'fastest' is not a kernel path; known paths: onednn, onednn-padded-channels", unknown.Stderr);
    }

    [Fact]
    public void Should_take_the_kernel_path_the_environment_names_and_reject_a_wrong_name()
    {
        var forced = CliRunner.RunProcess(new Dictionary<string, string> { [NumericsPolicy.PathsVariable] = "onednn-padded-channels-nchw" },
            "bench", "sample", "--paths", "onednn-padded-channels-nchw", "--count", "2", "--steps", "1", "--rounds", "1", "--threads", "2", "--json");
        Assert.True(forced.ExitCode == 0, forced.Stderr);
        Assert.Equal("onednn-padded-channels-nchw", forced.Json.GetProperty("numerics").GetProperty("path").GetString());

        var wrong = CliRunner.RunProcess(new Dictionary<string, string> { [NumericsPolicy.PathsVariable] = "onednn,quick" },
            "bench", "sample", "--count", "2", "--steps", "1", "--experts", "0", "--threads", "2");
        Assert.Equal(2, wrong.ExitCode);
        Assert.Contains($"islands: error: {NumericsPolicy.PathsVariable}: 'quick' is not a kernel path", wrong.Stderr);
    }
}
