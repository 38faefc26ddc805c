using System.Runtime.Intrinsics;
using System.Runtime.CompilerServices;
using static TorchSharp.torch;

namespace Islands.Diffusion.Modules;

public static partial class ChannelsLastGroupNorm
{
    private static unsafe class Kernels
    {
        private const int Width = 8;

        private static ParallelOptions Parallelism => new() { MaxDegreeOfParallelism = Math.Max(1, get_num_threads()) };

        public static void Forward(IntPtr x, IntPtr y, bool bf16, Shape s, float[] gamma, float[] beta, double eps, float[] mean, float[] rstd)
        {
            Parallel.For(0, s.B, Parallelism, () => new Scratch(s.C), (b, _, scratch) =>
            {
                ForwardSample(x, y, bf16, s, gamma, beta, eps, mean, rstd, b, scratch);
                return scratch;
            }, _ => { });
        }

        // Optimised from the first call: tiered compilation would run these loops unoptimised (no inlining of the vector helpers) for the first
        // calls.
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void ForwardSample(IntPtr x, IntPtr y, bool bf16, Shape s, float[] gamma, float[] beta, double eps, float[] mean, float[] rstd,
            int b, Scratch scratch)
        {
            var start = (long)b * s.HW * s.C;
            fixed (float* shift = scratch.Shift, sum = scratch.Sum, sumSq = scratch.SumSq, a = scratch.A, bias = scratch.Bias)
            {
                for (var c = 0; c < s.C; c++) shift[c] = Read(x, bf16, start + c);
                ShiftedSums(x, x, bf16, start, s, shift, sum, sumSq);
                var vectorEnd = s.C - s.C % Width;
                for (var g = 0; g < s.Groups; g++)
                {
                    var (m, v) = GroupMoments(scratch, s, g);
                    var r = 1.0 / Math.Sqrt(v + eps);
                    mean[b * s.Groups + g] = (float)m;
                    rstd[b * s.Groups + g] = (float)r;
                    for (var c = g * s.PerGroup; c < (g + 1) * s.PerGroup; c++)
                    {
                        a[c] = (float)(r * gamma[c]);
                        bias[c] = (float)(beta[c] - m * r * gamma[c]);
                    }
                }
                for (var hw = 0; hw < s.HW; hw++)
                {
                    var row = start + (long)hw * s.C;
                    var c = 0;
                    for (; c < vectorEnd; c += Width)
                        Save(y, bf16, row + c, Load(x, bf16, row + c) * Vector256.Load(a + c) + Vector256.Load(bias + c));
                    for (; c < s.C; c++) Write(y, bf16, row + c, Read(x, bf16, row + c) * a[c] + bias[c]);
                }
            }
        }

        public static void Backward(IntPtr x, IntPtr dy, IntPtr dx, bool bf16, Shape s, float[] gamma, float[] mean, float[] rstd, double[] dgamma,
            double[] dbeta)
        {
            var gate = new Lock();
            Parallel.For(0, s.B, Parallelism, () => new Scratch(s.C), (b, _, scratch) =>
            {
                BackwardSample(x, dy, dx, bf16, s, gamma, mean, rstd, dgamma, dbeta, b, scratch, gate);
                return scratch;
            }, _ => { });
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private static void BackwardSample(IntPtr x, IntPtr dy, IntPtr dx, bool bf16, Shape s, float[] gamma, float[] mean, float[] rstd,
            double[] dgamma, double[] dbeta, int b, Scratch scratch, Lock gate)
        {
            var start = (long)b * s.HW * s.C;
            var n = (double)s.HW * s.PerGroup;
            var localGamma = new double[s.C];
            fixed (float* sum = scratch.Sum, sumXy = scratch.SumSq, a = scratch.A, p = scratch.P, q = scratch.Bias)
            {
                // sum[c] = sum of dy, sumXy[c] = sum of dy * x over the sample's positions.
                ShiftedSums(dy, x, bf16, start, s, null, sum, sumXy);
                var vectorEnd = s.C - s.C % Width;
                for (var g = 0; g < s.Groups; g++)
                {
                    double m = mean[b * s.Groups + g], r = rstd[b * s.Groups + g];
                    double sumGammaDy = 0, sumGammaDyXhat = 0;
                    for (var c = g * s.PerGroup; c < (g + 1) * s.PerGroup; c++)
                    {
                        var dyXhat = r * (sumXy[c] - m * sum[c]);
                        sumGammaDy += gamma[c] * (double)sum[c];
                        sumGammaDyXhat += gamma[c] * dyXhat;
                        localGamma[c] = dyXhat;
                    }
                    // dx = r*gamma*dy - (r/n)*sum(gamma*dy) - (r/n)*xhat*sum(gamma*dy*xhat) = a*dy + p*x + q
                    var pg = (float)(-r * r * sumGammaDyXhat / n);
                    var qg = (float)(r * r * sumGammaDyXhat * m / n - r * sumGammaDy / n);
                    for (var c = g * s.PerGroup; c < (g + 1) * s.PerGroup; c++)
                    {
                        a[c] = (float)(r * gamma[c]);
                        p[c] = pg;
                        q[c] = qg;
                    }
                }
                for (var hw = 0; hw < s.HW; hw++)
                {
                    var row = start + (long)hw * s.C;
                    var c = 0;
                    for (; c < vectorEnd; c += Width)
                        Save(dx, bf16, row + c, Load(dy, bf16, row + c) * Vector256.Load(a + c) + Load(x, bf16, row + c) * Vector256.Load(p + c) +
                            Vector256.Load(q + c));
                    for (; c < s.C; c++) Write(dx, bf16, row + c, Read(dy, bf16, row + c) * a[c] + Read(x, bf16, row + c) * p[c] + q[c]);
                }
                lock (gate)
                {
                    for (var c = 0; c < s.C; c++)
                    {
                        dgamma[c] += localGamma[c];
                        dbeta[c] += sum[c];
                    }
                }
            }
        }

        /// <summary>
        /// Over the sample's positions, per channel: sum[c] = sum of (u - shift), products[c] = sum of (u - shift) * (v - shift)
        /// when shift is given (statistics, u = v = x), else sum of u and of u * v (backward, u = dy, v = x). Channels are taken
        /// 32 at a time with the accumulators in registers, walking down the rows.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void ShiftedSums(IntPtr u, IntPtr v, bool bf16, long start, Shape s, float* shift, float* sum, float* products)
        {
            var c = 0;
            for (; c + 4 * Width <= s.C; c += 4 * Width)
            {
                Vector256<float> h0 = default, h1 = default, h2 = default, h3 = default;
                if (shift is not null)
                {
                    h0 = Vector256.Load(shift + c);
                    h1 = Vector256.Load(shift + c + Width);
                    h2 = Vector256.Load(shift + c + 2 * Width);
                    h3 = Vector256.Load(shift + c + 3 * Width);
                }
                Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default, p0 = default, p1 = default, p2 = default, p3 = default;
                for (var hw = 0; hw < s.HW; hw++)
                {
                    var at = start + (long)hw * s.C + c;
                    var a0 = Load(u, bf16, at) - h0;
                    var a1 = Load(u, bf16, at + Width) - h1;
                    var a2 = Load(u, bf16, at + 2 * Width) - h2;
                    var a3 = Load(u, bf16, at + 3 * Width) - h3;
                    s0 += a0;
                    s1 += a1;
                    s2 += a2;
                    s3 += a3;
                    if (u == v)
                    {
                        p0 += a0 * a0;
                        p1 += a1 * a1;
                        p2 += a2 * a2;
                        p3 += a3 * a3;
                    }
                    else
                    {
                        p0 += a0 * Load(v, bf16, at);
                        p1 += a1 * Load(v, bf16, at + Width);
                        p2 += a2 * Load(v, bf16, at + 2 * Width);
                        p3 += a3 * Load(v, bf16, at + 3 * Width);
                    }
                }
                Vector256.Store(s0, sum + c);
                Vector256.Store(s1, sum + c + Width);
                Vector256.Store(s2, sum + c + 2 * Width);
                Vector256.Store(s3, sum + c + 3 * Width);
                Vector256.Store(p0, products + c);
                Vector256.Store(p1, products + c + Width);
                Vector256.Store(p2, products + c + 2 * Width);
                Vector256.Store(p3, products + c + 3 * Width);
            }
            for (; c + Width <= s.C; c += Width)
            {
                var h = shift is null ? default : Vector256.Load(shift + c);
                Vector256<float> s0 = default, p0 = default;
                for (var hw = 0; hw < s.HW; hw++)
                {
                    var at = start + (long)hw * s.C + c;
                    var a = Load(u, bf16, at) - h;
                    s0 += a;
                    p0 += a * (u == v ? a : Load(v, bf16, at));
                }
                Vector256.Store(s0, sum + c);
                Vector256.Store(p0, products + c);
            }
            for (; c < s.C; c++)
            {
                var h = shift is null ? 0 : shift[c];
                float s0 = 0, p0 = 0;
                for (var hw = 0; hw < s.HW; hw++)
                {
                    var at = start + (long)hw * s.C + c;
                    var a = Read(u, bf16, at) - h;
                    s0 += a;
                    p0 += a * (u == v ? a : Read(v, bf16, at));
                }
                sum[c] = s0;
                products[c] = p0;
            }
        }

        /// <summary>Mean and (biased) variance of group g from its channels' shifted sums: exact merge of equal-sized parts.</summary>
        private static (double Mean, double Variance) GroupMoments(Scratch scratch, Shape s, int g)
        {
            double meanSum = 0, varianceSum = 0;
            var from = g * s.PerGroup;
            for (var c = from; c < from + s.PerGroup; c++)
            {
                var d = scratch.Sum[c] / (double)s.HW;
                meanSum += scratch.Shift[c] + d;
                varianceSum += Math.Max(0, scratch.SumSq[c] / (double)s.HW - d * d);
            }
            var mean = meanSum / s.PerGroup;
            double spread = 0;
            for (var c = from; c < from + s.PerGroup; c++)
            {
                var channelMean = scratch.Shift[c] + scratch.Sum[c] / (double)s.HW;
                spread += (channelMean - mean) * (channelMean - mean);
            }
            return (mean, (varianceSum + spread) / s.PerGroup);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static Vector256<float> Load(IntPtr source, bool bf16, long index)
        {
            if (!bf16) return Vector256.Load((float*)source + index);
            var bits = Vector128.Load((ushort*)source + index);
            return Vector256.ShiftLeft(Vector256.Create(Vector128.WidenLower(bits), Vector128.WidenUpper(bits)), 16).AsSingle();
        }

        /// <summary>Stores 8 floats; bf16 rounds to nearest even, as libtorch does.</summary>
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Save(IntPtr target, bool bf16, long index, Vector256<float> value)
        {
            if (!bf16)
            {
                Vector256.Store(value, (float*)target + index);
                return;
            }
            var bits = value.AsUInt32();
            var rounded =
                Vector256.ShiftRightLogical(bits + Vector256.Create(0x7FFFu) + (Vector256.ShiftRightLogical(bits, 16) & Vector256.Create(1u)), 16);
            Vector128.Store(Vector128.Narrow(rounded.GetLower(), rounded.GetUpper()), (ushort*)target + index);
        }

        private static float Read(IntPtr source, bool bf16, long index) =>
            bf16 ? BitConverter.Int32BitsToSingle(((ushort*)source)[index] << 16) : ((float*)source)[index];

        private static void Write(IntPtr target, bool bf16, long index, float value)
        {
            if (!bf16)
            {
                ((float*)target)[index] = value;
                return;
            }
            var bits = (uint)BitConverter.SingleToInt32Bits(value);
            ((ushort*)target)[index] = (ushort)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
        }
    }
}
