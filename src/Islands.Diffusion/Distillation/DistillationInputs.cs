using Islands.Diffusion.Data;
using Islands.Diffusion.Serving;
using Islands.Diffusion.Training;
using static TorchSharp.torch;

namespace Islands.Diffusion.Distillation;

/// <summary>The real images a distillation reads: a translation's inputs, and the class's test images its results are compared with.</summary>
public static class DistillationInputs
{
    /// <summary>The dataset the store's experts were trained on, or null when it is not readable here.</summary>
    public static CanonicalDataset? Dataset(string store)
    {
        var expert = PublishedModels.Scan(store).Experts.FirstOrDefault();
        if (expert is null) return null;
        var dataDirectory = new RunDirectory(expert.RunDirectory).LoadConfig().DataDirectory;
        return File.Exists(Path.Combine(dataDirectory, DatasetManifest.FileName)) ? CanonicalDataset.Load(dataDirectory, verifyHashes: false) : null;
    }

    /// <summary>A translation's inputs: Count test images of SourceClass, picked with the seed.</summary>
    public static Tensor TestImages(DistillConfig config)
    {
        var data = Dataset(config.Store) ?? throw new ConfigException("store",
            $"{config.Store}: the experts' dataset is not readable here, and a translation starts from its test images");
        return TestImages(data, config.InputClass!.Value, config.Count, config.Seed);
    }

    public static Tensor TestImages(CanonicalDataset data, int cls, int count, int seed)
    {
        var test = data.Test;
        var ofClass = Enumerable.Range(0, test.Count).Where(i => test.Labels[i] == cls).ToList();
        if (ofClass.Count < count)
            throw new ConfigException("count", $"the test split holds {ofClass.Count} images of class {cls}, fewer than {count}");
        var random = new Random(seed);
        var picked = ofClass.OrderBy(_ => random.Next()).Take(count).ToList();
        return ImageTensors.ToTensor(test.Subset(picked));
    }
}
