using TorchSharp;
using static TorchSharp.torch;

namespace Islands.Diffusion.Data;

/// <summary>Conversions between raw uint8 images and model tensors in [-1, 1].</summary>
public static class ImageTensors
{
    /// <summary>All images as one float tensor [N, C, H, W] in [-1, 1].</summary>
    public static Tensor ToTensor(LabeledImages images)
    {
        using var scope = NewDisposeScope();
        var bytes = tensor(images.Pixels, ScalarType.Byte).reshape(images.Count, images.Channels, images.Height, images.Width);
        return (bytes.to_type(ScalarType.Float32) / 127.5f - 1f).MoveToOuterDisposeScope();
    }

    public static Tensor Labels(LabeledImages images) => tensor(images.Labels.Select(b => (long)b).ToArray(), ScalarType.Int64);

    /// <summary>[N, C, H, W] in [-1, 1] (values outside are clipped, NaN becomes 0) back to raw bytes, rounding half to even.</summary>
    public static byte[] ToBytes(Tensor images)
    {
        using var scope = NewDisposeScope();
        var bytes = ((images.detach().to(CPU).to_type(ScalarType.Float32).clamp(-1, 1) + 1) * 127.5f).round().nan_to_num(0)
            .to_type(ScalarType.Byte).contiguous();
        return bytes.data<byte>().ToArray();
    }
}
