using System.Security.Cryptography;
using Islands.Diffusion.Data;
using Islands.Diffusion.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Islands.Diffusion.Metrics;

public sealed record EvaluatorInfo(int SchemaVersion, string DatasetTrainSha256, int Epochs, int Seed, double TestAccuracy, string WeightsSha256);

public sealed record QualityReport(int Count, double Fid, double Kid, double EvaluatorTestAccuracy, int ReferenceCount);

/// <summary>
/// FID and KID against a dataset's test split, in the feature space of a <see cref="FeatureClassifier"/> trained on its
/// train split. The classifier is trained once and cached in the dataset directory (evaluator/), keyed by the train
/// split's hash, with its test accuracy.
/// </summary>
public sealed class Evaluator : IDisposable
{
    private readonly FeatureClassifier classifier;
    private readonly Tensor referenceFeatures;
    private readonly DistributionDistances.Gaussian reference;
    public EvaluatorInfo Info { get; }

    private Evaluator(FeatureClassifier classifier, EvaluatorInfo info, Tensor referenceFeatures)
    {
        this.classifier = classifier;
        Info = info;
        this.referenceFeatures = referenceFeatures;
        reference = DistributionDistances.Fit(referenceFeatures);
    }

    public static string CacheDirectory(CanonicalDataset data) => Path.Combine(data.Directory, "evaluator");

    /// <summary>Loads the cached classifier for this dataset, or trains and caches one.</summary>
    public static Evaluator ForDataset(CanonicalDataset data, int epochs = 3, int seed = 0, Action<string>? log = null, int? trainLimit = null)
    {
        var sha = Convert.ToHexStringLower(SHA256.HashData(data.Train.Pixels));
        var cache = CacheDirectory(data);
        var suffix = trainLimit is null ? "" : $"-limit{trainLimit}";
        var weightsPath = Path.Combine(cache, $"classifier-e{epochs}-s{seed}{suffix}.bin");
        var infoPath = Path.Combine(cache, $"classifier-e{epochs}-s{seed}{suffix}.json");
        var classifier = new FeatureClassifier(data.Manifest.Channels, data.Manifest.Height, data.Manifest.Width, Math.Max(2, data.ClassCount));
        EvaluatorInfo? info = null;
        if (File.Exists(weightsPath) && File.Exists(infoPath))
        {
            var cached = Json.Read<EvaluatorInfo>(infoPath);
            if (cached.DatasetTrainSha256 == sha && cached.WeightsSha256 == AtomicFile.Sha256(weightsPath))
            {
                classifier.load(weightsPath);
                info = cached;
            }
            else
            {
                log?.Invoke($"{weightsPath}: cached evaluator does not match this dataset or its hash; retraining");
            }
        }
        if (info is null)
        {
            log?.Invoke($"training the evaluation classifier on {trainLimit ?? data.Train.Count} images ({epochs} epochs); cached in {cache}");
            var accuracy = Train(classifier, data, epochs, seed, trainLimit, log);
            AtomicFile.Write(weightsPath, stream => classifier.save(new BinaryWriter(stream)));
            info = new EvaluatorInfo(1, sha, epochs, seed, accuracy, AtomicFile.Sha256(weightsPath));
            Json.WriteAtomic(infoPath, info);
        }
        classifier.eval();
        using var images = ImageTensors.ToTensor(data.Test);
        var features = FeaturesOf(classifier, images);
        return new Evaluator(classifier, info, features);
    }

    private static double Train(FeatureClassifier model, CanonicalDataset data, int epochs, int seed, int? limit, Action<string>? log)
    {
        random.manual_seed(seed);
        using var all = ImageTensors.ToTensor(data.Train);
        using var allLabels = ImageTensors.Labels(data.Train);
        var n = Math.Min(limit ?? int.MaxValue, data.Train.Count);
        using var optimizer = optim.Adam(model.parameters(), 2e-3);
        using var generator = new Generator((ulong)seed);
        const int batch = 128;
        var stepsPerEpoch = n / batch;
        var total = epochs * stepsPerEpoch;
        var step = 0;
        model.train();
        for (var epoch = 0; epoch < epochs; epoch++)
        {
            using var order = randperm(data.Train.Count, generator: generator)[..n];
            for (var s = 0; s < stepsPerEpoch; s++, step++)
            {
                using var scope = NewDisposeScope();
                foreach (var g in optimizer.ParamGroups) g.LearningRate = 2e-3 * 0.5 * (1 + Math.Cos(Math.PI * step / total));
                var idx = order[(s * batch)..((s + 1) * batch)];
                var loss = nn.functional.cross_entropy(model.call(all.index_select(0, idx)), allLabels.index_select(0, idx));
                optimizer.zero_grad();
                loss.backward();
                optimizer.step();
            }
            log?.Invoke($"evaluator epoch {epoch + 1}/{epochs}");
        }
        model.eval();
        using var test = ImageTensors.ToTensor(data.Test);
        using var testLabels = ImageTensors.Labels(data.Test);
        long correct = 0;
        using (no_grad())
        {
            for (var start = 0; start < data.Test.Count; start += 1000)
            {
                using var scope = NewDisposeScope();
                var end = Math.Min(start + 1000, data.Test.Count);
                var predicted = model.call(test[start..end]).argmax(1);
                correct += predicted.eq(testLabels[start..end]).sum().item<long>();
            }
        }
        return correct / (double)data.Test.Count;
    }

    public Tensor Features(Tensor images) => FeaturesOf(classifier, images);

    private static Tensor FeaturesOf(FeatureClassifier model, Tensor images)
    {
        using var _ = no_grad();
        var chunks = new List<Tensor>();
        for (long start = 0; start < images.shape[0]; start += 1000)
        {
            var end = Math.Min(start + 1000, images.shape[0]);
            chunks.Add(model.Features(images.narrow(0, start, end - start)));
        }
        var result = cat(chunks, 0);
        foreach (var c in chunks) c.Dispose();
        return result;
    }

    /// <summary>
    /// The fraction of class-conditional samples (images in [-1, 1]) that the classifier puts in the class they were asked
    /// for: recognisability, which an all-black, noisy or NaN grid fails however well-formed it is. Chance is 1/classes.
    /// </summary>
    public double ClassAgreement(Tensor images, IReadOnlyList<long> classes)
    {
        if (images.shape[0] != classes.Count) throw new ArgumentException($"{images.shape[0]} images but {classes.Count} classes");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var predicted = classifier.call(nan_to_num(images, 0, 0, 0)).argmax(1);
        return predicted.eq(tensor(classes.ToArray())).to_type(ScalarType.Float32).mean().item<float>();
    }

    /// <summary>The classifier's mean probability of one class over images in [-1, 1].</summary>
    public double ClassProbability(Tensor images, long cls)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var p = nn.functional.softmax(classifier.call(nan_to_num(images, 0, 0, 0).to_type(ScalarType.Float32)), 1);
        return p.select(1, cls).to_type(ScalarType.Float64).mean().item<double>();
    }

    /// <summary>FID and KID of images in [-1, 1] against the test split.</summary>
    public QualityReport Score(Tensor images)
    {
        using var features = Features(images);
        var fid = DistributionDistances.Frechet(DistributionDistances.Fit(features), reference);
        var kid = DistributionDistances.Kernel(features, referenceFeatures);
        return new QualityReport((int)images.shape[0], fid, kid, Info.TestAccuracy, reference.Count);
    }

    /// <summary>FID and KID of images against other images (e.g. the test split's images of one class), both in [-1, 1].</summary>
    public QualityReport Score(Tensor images, Tensor referenceImages)
    {
        using var features = Features(images);
        using var against = Features(referenceImages);
        var fid = DistributionDistances.Frechet(DistributionDistances.Fit(features), DistributionDistances.Fit(against));
        var kid = DistributionDistances.Kernel(features, against);
        return new QualityReport((int)images.shape[0], fid, kid, Info.TestAccuracy, (int)referenceImages.shape[0]);
    }

    public void Dispose()
    {
        classifier.Dispose();
        referenceFeatures.Dispose();
    }
}
