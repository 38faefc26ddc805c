using static TorchSharp.torch;

namespace Islands.Diffusion.Modules;

/// <summary>
/// Channels-last (NHWC) strides for 4-D tensors. TorchSharp 0.107 has no memory_format argument on contiguous() or to(),
/// but libtorch recognises a layout by its strides alone, and permuting to NHWC, making that contiguous and permuting back
/// yields exactly the strides of contiguous(memory_format=channels_last). A tensor already in that layout is returned as a view, with no copy.
/// </summary>
public static class MemoryLayout
{
    public static Tensor ChannelsLast(Tensor x) => x.dim() == 4 && !IsChannelsLast(x) ? x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2) : x;

    /// <summary>True when x's strides are NHWC-dense: channel stride 1, then width, height and batch.</summary>
    public static bool IsChannelsLast(Tensor x)
    {
        if (x.dim() != 4) return false;
        var shape = x.shape;
        var strides = x.stride();
        return strides[1] == 1 && strides[3] == shape[1] && strides[2] == shape[1] * shape[3] && strides[0] == shape[1] * shape[2] * shape[3];
    }
}
