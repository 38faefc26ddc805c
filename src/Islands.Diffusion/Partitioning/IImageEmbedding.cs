using TorchSharp;

namespace Islands.Diffusion.Partitioning;

/// <summary>
/// Maps images to the feature space where partitions are clustered. Pluggable: the paper uses DINOv2 features; the
/// default here is PCA of the pixels. Never used for evaluation (FID has its own feature space).
/// </summary>
public interface IImageEmbedding
{
    string Kind { get; }
    int Dimensions { get; }

    /// <summary>Embeds [N, C, H, W] images in [-1, 1] into [N, Dimensions].</summary>
    torch.Tensor Embed(torch.Tensor images);

    EmbeddingParameters Export();
}

/// <summary>The serialisable parameters of an embedding: a kind discriminator and its arrays.</summary>
public sealed record EmbeddingParameters(string Kind, int Dimensions, float[] Mean, float[][] Components, double[] ExplainedVariance);
