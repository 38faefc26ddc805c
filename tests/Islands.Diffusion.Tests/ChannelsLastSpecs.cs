using Islands.Diffusion.Configs;
using Islands.Diffusion.Modules;
using Islands.Diffusion.Numerics;
using Islands.Diffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Islands.Diffusion.Tests;

/// <summary>The channels-last paths: Islands' own GroupNorm kernel against fp64, and the UNet giving the same answers in either layout.</summary>
[Collection(SerialCollection.Name)]
public sealed class ChannelsLastSpecs
{
    [Theory]
    [InlineData(4, 32, 12, 12, 8, 0.0)]
    [InlineData(3, 24, 5, 7, 8, 0.0)]
    [InlineData(2, 12, 6, 6, 4, 0.0)] // 12 channels: one 8-wide vector and a scalar tail
    [InlineData(2, 64, 7, 7, 8, 100.0)] // a mean far from zero: the statistics must not cancel
    public void Should_compute_group_norm_of_channels_last_input_as_fp64_does_forward_and_backward(int b, int c, int h, int w, int groups, double offset)
    {
        TorchSetup.Initialise(2);
        foreach (var (dtype, tolerance) in new[] { (ScalarType.Float32, 1e-4), (ScalarType.BFloat16, 2e-2) })
        {
            using var scope = NewDisposeScope();
            using var generator = new Generator(17);
            var x0 = (randn([b, c, h, w], generator: generator) * 3 + offset).to_type(dtype);
            var gamma = (rand([c], generator: generator) + 0.5f).requires_grad_();
            var beta = randn([c], generator: generator).requires_grad_();
            var cotangent = randn([b, c, h, w], generator: generator).to_type(dtype);

            var x = MemoryLayout.ChannelsLast(x0).detach().requires_grad_();
            Assert.True(ChannelsLastGroupNorm.Supports(x, groups));
            var y = ChannelsLastGroupNorm.Apply(x, groups, gamma, beta, 1e-5);
            Assert.True(MemoryLayout.IsChannelsLast(y), "the output keeps the channels-last layout");
            Assert.Equal(dtype, y.dtype);
            y.backward([MemoryLayout.ChannelsLast(cotangent)]);

            var xr = x0.to_type(ScalarType.Float64).detach().requires_grad_();
            var gr = gamma.detach().to_type(ScalarType.Float64).requires_grad_();
            var br = beta.detach().to_type(ScalarType.Float64).requires_grad_();
            var yr = nn.functional.group_norm(xr, groups, gr, br, 1e-5);
            yr.backward([cotangent.to_type(ScalarType.Float64)]);

            foreach (var (name, result, expected) in new[] { ("output", y, yr), ("input gradient", x.grad!, xr.grad!), ("weight gradient", gamma.grad!, gr.grad!), ("bias gradient", beta.grad!, br.grad!) })
            {
                var r = result.to_type(ScalarType.Float64);
                Assert.True(r.isfinite().all().item<bool>(), $"{dtype} {name} holds non-finite values");
                var error = (r - expected).abs().max().item<double>() / expected.abs().max().item<double>();
                Assert.True(error <= tolerance, $"{dtype} {name}: relative error {error:G3} over {tolerance}");
            }
        }
    }

    [Fact]
    public void Should_leave_nchw_input_and_uneven_groups_to_libtorch()
    {
        TorchSetup.Initialise(2);
        using var scope = NewDisposeScope();
        Assert.False(ChannelsLastGroupNorm.Supports(randn(2, 32, 4, 4), 8));
        Assert.False(ChannelsLastGroupNorm.Supports(MemoryLayout.ChannelsLast(randn(2, 30, 4, 4)), 8));
        Assert.False(ChannelsLastGroupNorm.Supports(MemoryLayout.ChannelsLast(randn(2, 32, 4, 4).to_type(ScalarType.Float64)), 8));
        var cl = MemoryLayout.ChannelsLast(randn(2, 32, 4, 4));
        Assert.True(MemoryLayout.IsChannelsLast(cl));
        Assert.Equal(cl.Handle, MemoryLayout.ChannelsLast(cl).Handle);
    }

    [Fact]
    public void Should_give_the_unet_the_same_velocity_and_gradients_in_channels_last_as_in_nchw()
    {
        TorchSetup.Initialise(2);
        using var scope = NewDisposeScope();
        random.manual_seed(3);
        using var unet = new ModelConfig().Build();
        using var generator = new Generator(5);
        var x = randn([6, 1, 28, 28], generator: generator);
        var t = rand([6], generator: generator);
        var classes = tensor(new long[] { 0, 1, 2, 3, 4, 10 });

        Tensor Velocity(NumericsPolicy path)
        {
            using var trial = NumericsPolicy.Trial(path);
            using var _ = no_grad();
            return unet.call(x, t, classes);
        }
        // The layouts are compared on the kernels this CPU's self-test chose: where oneDNN's direct convolutions are wrong
        // (some AMD Zen 5 VMs), both layouts run with padded channels, as training here does.
        var padded = NumericsPolicy.EnsureSelfTested().Chosen.PadConvolutionChannels;
        var nchw = Velocity(padded ? NumericsPolicy.PaddedChannelsNchw : NumericsPolicy.DirectNchw);
        var inference = Velocity(padded ? NumericsPolicy.PaddedChannels : NumericsPolicy.Direct);
        Assert.True(nchw.isfinite().all().item<bool>());
        Assert.True(nchw.std().item<float>() > 1e-3, "the velocity of a random UNet is not constant");
        Assert.True(Relative(inference, nchw) < 1e-4, $"channels-last inference differs from NCHW by {Relative(inference, nchw):G3}");

        Tensor[] Gradients(NumericsPolicy path)
        {
            using var trial = NumericsPolicy.Trial(path);
            unet.zero_grad();
            unet.call(x, t, classes).square().mean().backward();
            return unet.parameters().Select(p => p.grad!.clone()).ToArray();
        }
        var nchwGradients = Gradients(padded ? NumericsPolicy.PaddedChannelsNchw : NumericsPolicy.DirectNchw);
        var channelsLastGradients = Gradients(padded ? NumericsPolicy.ChannelsLastPadded : NumericsPolicy.ChannelsLastDirect);
        var worst = nchwGradients.Zip(channelsLastGradients).Max(p => Relative(p.Second, p.First));
        Assert.True(worst < 1e-3, $"channels-last training gradients differ from NCHW by up to {worst:G3}");
    }

    private static double Relative(Tensor result, Tensor expected) =>
        (result - expected).abs().max().item<float>() / Math.Max(expected.abs().max().item<float>(), 1e-12);
}
