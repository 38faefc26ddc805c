using TorchSharp;
using static TorchSharp.torch;

namespace Islands.Diffusion.Partitioning;

/// <summary>Principal components of the flattened pixels, computed in float64 with a sign convention that makes them deterministic.</summary>
public sealed class PcaEmbedding : IImageEmbedding
{
    public const string KindName = "pca";
    private readonly float[] mean;
    private readonly float[][] components;
    private readonly double[] explained;

    public string Kind => KindName;
    public int Dimensions => components.Length;

    private PcaEmbedding(float[] mean, float[][] components, double[] explained)
    {
        this.mean = mean;
        this.components = components;
        this.explained = explained;
    }

    public static PcaEmbedding Fit(Tensor images, int dimensions)
    {
        using var scope = NewDisposeScope();
        var x = images.reshape(images.shape[0], -1).to_type(ScalarType.Float32);
        var features = x.shape[1];
        if (dimensions < 1 || dimensions > features)
            throw new ConfigException("embeddingDimensions", $"{dimensions} must be between 1 and the pixel count {features}");
        var mu = x.mean([0]);
        var centred = x - mu;
        // The covariance product runs in float32 (10x faster than float64 here); the eigensolver runs in float64.
        var covariance = (centred.t().matmul(centred) / Math.Max(1, x.shape[0] - 1)).to_type(ScalarType.Float64);
        var (values, vectors) = linalg.eigh(covariance);
        var order = arange(features - 1, features - 1 - dimensions, -1, dtype: ScalarType.Int64);
        var top = vectors.index_select(1, order).t().contiguous(); // [dims, features]
        var pivot = top.abs().argmax(1, keepdim: true);
        var signs = top.gather(1, pivot).sign();
        top = (top * signs).to_type(ScalarType.Float32).contiguous();
        var comps = new float[dimensions][];
        var flat = top.data<float>().ToArray();
        for (var i = 0; i < dimensions; i++) comps[i] = flat.AsSpan(i * (int)features, (int)features).ToArray();
        var total = values.clamp_min(0).sum().item<double>();
        var explainedVariance = values.index_select(0, order).data<double>().Select(v => total > 0 ? Math.Max(0, v) / total : 0).ToArray();
        return new PcaEmbedding(mu.data<float>().ToArray(), comps, explainedVariance);
    }

    public static PcaEmbedding FromParameters(EmbeddingParameters p)
    {
        if (p.Kind != KindName) throw new ConfigException("embedding.kind", $"'{p.Kind}' is not '{KindName}'");
        return new PcaEmbedding(p.Mean, p.Components, p.ExplainedVariance);
    }

    public Tensor Embed(Tensor images)
    {
        using var scope = NewDisposeScope();
        var x = images.reshape(images.shape[0], -1).to_type(ScalarType.Float32);
        var mu = tensor(mean);
        var comps = tensor(components.SelectMany(c => c).ToArray()).reshape(components.Length, mean.Length);
        return (x - mu).matmul(comps.t()).MoveToOuterDisposeScope();
    }

    public EmbeddingParameters Export() => new(KindName, Dimensions, mean, components, explained);
}
