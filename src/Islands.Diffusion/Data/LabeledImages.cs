namespace Islands.Diffusion.Data;

/// <summary>Images as raw bytes (N x C x H x W, row-major) with one class label per image.</summary>
public sealed record LabeledImages(byte[] Pixels, byte[] Labels, int Channels, int Height, int Width)
{
    public int Count => Labels.Length;
    public int ImageBytes => Channels * Height * Width;

    public LabeledImages Subset(IReadOnlyList<int> indices)
    {
        var pixels = new byte[indices.Count * ImageBytes];
        var labels = new byte[indices.Count];
        for (var i = 0; i < indices.Count; i++)
        {
            Buffer.BlockCopy(Pixels, indices[i] * ImageBytes, pixels, i * ImageBytes, ImageBytes);
            labels[i] = Labels[indices[i]];
        }
        return new LabeledImages(pixels, labels, Channels, Height, Width);
    }
}
