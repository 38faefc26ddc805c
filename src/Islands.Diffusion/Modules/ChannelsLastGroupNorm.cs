using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Islands.Diffusion.Modules;

/// <summary>
/// GroupNorm for channels-last (NHWC) activations, forward and backward, in fp32 arithmetic for fp32 and bf16 tensors.
/// libtorch 2.10's own GroupNorm kernel for channels-last input is 7-13x slower than its NCHW kernel on AMD EPYC Zen 5
/// (bench ops), which cost channels-last inference more than its faster convolutions saved. Here each sample's rows of C
/// channels are read with SIMD vectors across the channels (Vector256: AVX2 and up; correct, if slower, elsewhere): two passes over the input
/// forward (statistics, then the affine map), two over input and gradient backward, samples split across libtorch's intra-op thread count.
/// Statistics are taken per channel around the channel's first value (which keeps E[x^2]-E[x]^2 from cancelling) and
/// merged per group in double. Inference on the default path uses it; training stays NCHW because its backward is still
/// slower than libtorch's NCHW kernel (README "Speed").
/// </summary>
public static partial class ChannelsLastGroupNorm
{
    public static Tensor Apply(Tensor x, long groups, Tensor weight, Tensor bias, double eps) =>
        GroupNormFunction.apply(x, weight, bias, groups, eps)[0];

    /// <summary>True when the kernel applies: a 4-D channels-last fp32 or bf16 CPU tensor whose channels split into whole groups.</summary>
    public static bool Supports(Tensor x, long groups) =>
        x.device_type == DeviceType.CPU && x.dtype is ScalarType.Float32 or ScalarType.BFloat16 && MemoryLayout.IsChannelsLast(x)
        && x.shape[1] % groups == 0 && x.shape[0] * x.shape[1] * x.shape[2] * x.shape[3] <= int.MaxValue;

    private sealed class GroupNormFunction : autograd.MultiTensorFunction<GroupNormFunction>
    {
        public override string Name => "IslandsChannelsLastGroupNorm";

        public override List<Tensor> forward(autograd.AutogradContext ctx, params object[] vars)
        {
            var x = (Tensor)vars[0];
            var weight = (Tensor)vars[1];
            var bias = (Tensor)vars[2];
            var groups = (int)(long)vars[3];
            var eps = (double)vars[4];
            var shape = Shape.Of(x, groups);
            var gamma = ToFloats(weight);
            var beta = ToFloats(bias);
            var mean = new float[shape.B * groups];
            var rstd = new float[shape.B * groups];
            var y = empty([shape.B, x.shape[2], x.shape[3], shape.C], x.dtype);
            using (var xv = x.permute(0, 2, 3, 1))
            {
                Kernels.Forward(Pointer(xv), Pointer(y), x.dtype == ScalarType.BFloat16, shape, gamma, beta, eps, mean, rstd);
            }
            ctx.save_for_backward([x, weight]);
            ctx.save_data("mean", mean);
            ctx.save_data("rstd", rstd);
            ctx.save_data("groups", groups);
            return [y.permute(0, 3, 1, 2)];
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, List<Tensor> gradients)
        {
            var saved = ctx.get_saved_variables();
            var x = saved[0];
            var weight = saved[1];
            var groups = (int)ctx.get_data("groups");
            var shape = Shape.Of(x, groups);
            var dy = MemoryLayout.ChannelsLast(gradients[0]).to_type(x.dtype);
            var dx = empty([shape.B, x.shape[2], x.shape[3], shape.C], x.dtype);
            var dgamma = new double[shape.C];
            var dbeta = new double[shape.C];
            using (var xv = x.permute(0, 2, 3, 1))
            using (var dyv = dy.permute(0, 2, 3, 1))
            {
                Kernels.Backward(Pointer(xv), Pointer(dyv), Pointer(dx), x.dtype == ScalarType.BFloat16, shape, ToFloats(weight),
                    (float[])ctx.get_data("mean"), (float[])ctx.get_data("rstd"), dgamma, dbeta);
            }
            var dweight = tensor(dgamma.Select(v => (float)v).ToArray()).to_type(weight.dtype);
            var dbias = tensor(dbeta.Select(v => (float)v).ToArray()).to_type(weight.dtype);
            // One gradient per forward argument: the group count and epsilon get none.
            return [dx.permute(0, 3, 1, 2), dweight, dbias, null!, null!];
        }
    }

    internal readonly record struct Shape(int B, int HW, int C, int Groups)
    {
        public int PerGroup => C / Groups;

        public static Shape Of(Tensor x, int groups) => new((int)x.shape[0], (int)(x.shape[2] * x.shape[3]), (int)x.shape[1], groups);
    }

    private static float[] ToFloats(Tensor t)
    {
        using var f = t.detach().to_type(ScalarType.Float32).contiguous();
        return f.data<float>().ToArray();
    }

    /// <summary>The address of a dense CPU tensor's first element (the tensor must stay alive while it is used).</summary>
    private static unsafe IntPtr Pointer(Tensor dense)
    {
        if (!dense.is_contiguous()) throw new InvalidOperationException("channels-last GroupNorm needs dense NHWC memory");
        return (IntPtr)Unsafe.AsPointer(ref MemoryMarshal.GetReference(dense.bytes));
    }

    private sealed class Scratch(int channels)
    {
        public readonly float[] Shift = new float[channels];
        public readonly float[] Sum = new float[channels];
        public readonly float[] SumSq = new float[channels];
        public readonly float[] A = new float[channels];
        public readonly float[] Bias = new float[channels];
        public readonly float[] P = new float[channels];
    }
}
