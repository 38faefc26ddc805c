using Islands.Diffusion.Modules;

namespace Islands.Diffusion.Configs;

/// <summary>
/// Shape of a class-conditional UNet expert. The default (32 channels, x1/x2/x4, one ResBlock per level) has about
/// 1.1 M parameters at 28x28. ClassCount excludes the extra null class used for classifier-free guidance.
/// </summary>
/// <param name="DegradedCondition">The model also knows "degraded, class c" (label ClassCount + 1 + c), learned from
/// corrupted copies of its data (<see cref="Training.Degradations"/>): score distillation's calibrated source.</param>
public sealed record ModelConfig(
    int BaseChannels = 32,
    int[]? ChannelMultipliers = null,
    int ResBlocksPerLevel = 1,
    int TimeEmbeddingDim = 128,
    int GroupNormGroups = 8,
    int ClassCount = 10,
    int ImageChannels = 1,
    int ImageSize = 28,
    int? ImageWidth = null,
    bool DegradedCondition = false)
{
    /// <summary>Labels the class embedding holds: the classes, the null class, and the degraded classes when learned.</summary>
    public int ConditionCount => ClassCount + 1 + (DegradedCondition ? ClassCount : 0);

    /// <summary>The label of "degraded, class c".</summary>
    public long DegradedClass(long c) => UNet.DegradedLabel(ClassCount, c);

    public int[] Multipliers => ChannelMultipliers ?? [1, 2, 4];

    /// <summary>Image height; <see cref="ImageSize"/> names it so that a config.json written for square images still reads.</summary>
    public int Height => ImageSize;

    /// <summary>Image width: <see cref="ImageWidth"/>, or the height for square images.</summary>
    public int Width => ImageWidth ?? ImageSize;

    /// <summary>The model's images as C × H × W.</summary>
    public (long C, long H, long W) Shape => (ImageChannels, Height, Width);

    /// <summary>This model for images of the given shape (a dataset's manifest).</summary>
    public ModelConfig ForImages(int channels, int height, int width) =>
        this with { ImageChannels = channels, ImageSize = height, ImageWidth = width == height ? null : width };

    public IEnumerable<string> Validate()
    {
        if (BaseChannels < 1) yield return $"model.baseChannels: {BaseChannels} must be positive";
        if (Multipliers.Length is < 1 or > 5) yield return "model.channelMultipliers: needs 1 to 5 levels";
        if (Multipliers.Any(m => m < 1)) yield return "model.channelMultipliers: every multiplier must be positive";
        if (Multipliers.Any(m => BaseChannels * m % GroupNormGroups != 0))
            yield return $"model.groupNormGroups: {GroupNormGroups} must divide every level's channel count";
        if (ResBlocksPerLevel < 1) yield return "model.resBlocksPerLevel: must be at least 1";
        if (TimeEmbeddingDim < 2 || TimeEmbeddingDim % 2 != 0) yield return "model.timeEmbeddingDim: must be even and positive";
        if (ClassCount < 0) yield return "model.classCount: must not be negative";
        if (ImageChannels < 1) yield return $"model.imageChannels: {ImageChannels} must be at least 1";
        if (ImageSize < 1 || ImageSize % (1 << (Multipliers.Length - 1)) != 0)
            yield return $"model.imageSize: {ImageSize} (the height) must be a positive multiple of 2^(levels-1) = {1 << (Multipliers.Length - 1)}";
        if (ImageWidth is { } w && (w < 1 || w % (1 << (Multipliers.Length - 1)) != 0))
            yield return $"model.imageWidth: {w} must be a positive multiple of 2^(levels-1) = {1 << (Multipliers.Length - 1)}";
    }

    public UNet Build() => new(this);
}
