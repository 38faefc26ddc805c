using System.CommandLine;
using Islands.Diffusion.Data;
using Islands.Diffusion.Metrics;
using Islands.Diffusion.Partitioning;
using Islands.Diffusion.Sampling;
using Islands.Diffusion.Training;
using static TorchSharp.torch;

namespace Islands.Cli.Commands;

public static class EvalCommand
{
    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var model = new Option<string>("--model") { Description = "Run directory of a trained expert", Required = true };
        var count = new Option<int>("--count") { Description = "Samples to score", DefaultValueFactory = _ => 2000 };
        var epochs = new Option<int>("--evaluator-epochs") { Description = "Epochs of the feature classifier (trained once per dataset, cached)",
            DefaultValueFactory = _ => 3 };
        var limit = new Option<int?>("--evaluator-images")
        {
            Description = "Train the feature classifier on only this many images (quick checks; cached separately)"
        };
        var command = new Command("eval", "FID and KID of a model's samples against the test split, in a CNN classifier's feature space")
        {
            model, count, epochs, limit, SampleCommand.Precision, SampleCommand.Steps, SampleCommand.Cfg, SampleCommand.Sampler, SampleCommand.Seed,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, (ctx, parse, _) =>
        {
            var n = parse.GetValue(count);
            if (n is < 10 or > 100_000) throw new Diffusion.ConfigException("--count", $"{n} must lie in 10..100000");
            var options = new SamplerOptions(parse.GetValue(SampleCommand.Steps), parse.GetValue(SampleCommand.Sampler)!,
                parse.GetValue(SampleCommand.Cfg), parse.GetValue(SampleCommand.Seed));
            options.ThrowIfInvalid();
            var run = new RunDirectory(parse.GetValue(model)!);
            var config = run.LoadConfig();
            IslandsCli.InitTorch(parse);
            var data = CanonicalDataset.Load(config.DataDirectory);
            using var evaluator = Evaluator.ForDataset(data, parse.GetValue(epochs), log: ctx.Log, trainLimit: parse.GetValue(limit));
            var members = RunMembers(data, config);
            var classes = ClassesLike(data, members, n);
            var (unet, step, checkpoint) = run.LoadModel(warn: ctx.Log);
            using var ownedModel = unet;
            var m = config.ModelOrDefault;
            using var samples = FlowSampler.Sample(Diffusion.Modules.Bfloat16Velocity.ForPrecision(unet, parse.GetValue(SampleCommand.Precision)!), n,
                classes, options, m.Shape);
            var report = evaluator.Score(samples);
            using var noise = rand(n, m.ImageChannels, m.Height, m.Width) * 2 - 1;
            var noiseReport = evaluator.Score(noise);
            // Yardstick for an expert: its own partition's real images score this against the whole test split.
            var shuffled = members.ToArray();
            new Random(0).Shuffle(shuffled);
            using var real = ImageTensors.ToTensor(data.Train.Subset(shuffled[..Math.Min(n, shuffled.Length)]));
            var realReport = evaluator.Score(real);
            var result = new
            {
                model = run.Path, step, checkpoint, report.Count, fid = report.Fid, kid = report.Kid, noiseFid = noiseReport.Fid,
                trainingDataFid = realReport.Fid,
                evaluatorTestAccuracy = report.EvaluatorTestAccuracy, reference = $"test split ({report.ReferenceCount} images)",
            };
            ctx.Result(result, w => w.WriteLine(
                $"FID {report.Fid:F2}  KID {report.Kid:F4}  ({n} samples at step {step}); yardsticks: {n} of the run's own training images score " +
                $"FID {realReport.Fid:F1}, uniform noise {noiseReport.Fid:F1}; evaluator test accuracy {report.EvaluatorTestAccuracy:P1}"));
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }

    /// <summary>Indices of the training images the run learned from: its partition, or every image for the monolith.</summary>
    public static int[] RunMembers(CanonicalDataset data, Diffusion.Configs.TrainConfig config) => config.PartitionsFile is null
        ? Enumerable.Range(0, data.Train.Count).ToArray()
        : PartitionFile.Load(config.PartitionsFile).Members(config.Expert!.Value);

    /// <summary>Sample classes in the proportions of the run's own training images (an expert knows only its partition's classes).</summary>
    public static long[] ClassesLike(CanonicalDataset data, IReadOnlyList<int> members, int count)
    {
        var histogram = new long[Math.Max(1, data.ClassCount)];
        foreach (var i in members) histogram[data.Train.Labels[i]]++;
        var total = histogram.Sum();
        var quotas = histogram.Select(h => h * (double)count / total).ToArray();
        var allocation = quotas.Select(q => (int)Math.Floor(q)).ToArray();
        foreach (var i in quotas.Select((q, i) => (frac: q - Math.Floor(q), i)).OrderByDescending(x => x.frac).Take(count - allocation.Sum()))
            allocation[i.i]++;
        return allocation.SelectMany((a, c) => Enumerable.Repeat((long)c, a)).ToArray();
    }
}
