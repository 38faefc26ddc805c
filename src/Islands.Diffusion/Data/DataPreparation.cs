using Islands.Diffusion.Partitioning;

namespace Islands.Diffusion.Data;

/// <summary>
/// A dataset directory and its partition file, ready for islands: Fashion-MNIST when it is installed, otherwise the
/// synthetic shapes (saying how to install it). Idempotent: what exists and verifies is kept, so reruns are instant.
/// </summary>
public static class DataPreparation
{
    public static CanonicalDataset Prepare(string dataDirectory, string partitionsFile, int k, Action<string> log)
    {
        var dataset = EnsureDataset(dataDirectory, log);
        if (File.Exists(partitionsFile))
        {
            var existing = PartitionFile.Load(partitionsFile);
            if (existing.K != k)
                throw new ConfigException("k", $"{partitionsFile} already holds K={existing.K} partitions; remove it to repartition into {k}");
            return dataset;
        }
        log($"partitioning {dataset.Train.Count} images of {dataset.Manifest.Name} into K={k} clusters");
        Partitioner.Partition(dataset.Train, dataset.Manifest.Classes, new PartitionOptions(k), Path.GetFullPath(dataDirectory)).Save(partitionsFile);
        return dataset;
    }

    /// <summary>The dataset in dataDirectory, imported first (Fashion-MNIST, else synthetic shapes) when the directory is empty.</summary>
    public static CanonicalDataset EnsureDataset(string dataDirectory, Action<string> log)
    {
        if (!File.Exists(Path.Combine(dataDirectory, DatasetManifest.FileName)))
        {
            if (Directory.Exists(dataDirectory) && Directory.EnumerateFileSystemEntries(dataDirectory).Any())
                throw new ConfigException("dataDirectory",
                    $"{dataDirectory} exists but holds no dataset (manifest.json is missing); remove it or choose " +
                    "another directory");
            if (DatasetImporter.FashionMnistInstalled)
            {
                log($"importing Fashion-MNIST from {DatasetImporter.FashionMnistLocation}");
                DatasetImporter.Import("fashion-mnist", dataDirectory);
            }
            else
            {
                log($"Fashion-MNIST is not installed ({DatasetImporter.FashionMnistLocation} is missing): install it with 'apt-get install " +
                    "dataset-fashion-mnist'. " +
                    "Meanwhile this runs on synthetic shapes that islands draws itself.");
                DatasetImporter.Import("synthetic", dataDirectory);
            }
        }
        return CanonicalDataset.Load(dataDirectory);
    }
}
