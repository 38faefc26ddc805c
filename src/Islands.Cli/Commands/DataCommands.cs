using System.CommandLine;
using Islands.Diffusion.Data;
using Islands.Diffusion.Partitioning;

namespace Islands.Cli.Commands;

public static class DataCommands
{
    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var data = new Command("data", "Import datasets and partition them into clusters");
        data.Add(Import(stdout, stderr));
        data.Add(Partition(stdout, stderr));
        data.Add(Prepare(stdout, stderr));
        return data;
    }

    private static Command Import(TextWriter stdout, TextWriter stderr)
    {
        var source = new Option<string>("--source")
        {
            Description = "fashion-mnist (Debian's dataset-fashion-mnist), synthetic (grey shapes drawn by islands), synthetic-rgb (colour shapes, " +
                "3x24x32), idx:DIR (an MNIST-format pair) or folder:DIR (one subfolder per class)",
            Required = true
        };
        var output = new Option<string>("--out") { Description = "New dataset directory", Required = true };
        var size = new Option<int>("--size") { Description = "Image side for folder imports", DefaultValueFactory = _ => 28 };
        var command = new Command("import", "Import a raw dataset into a canonical dataset directory (tensors + manifest with SHA-256)")
        {
            source, output, size
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, (ctx, parse, _) =>
        {
            var manifest = DatasetImporter.Import(parse.GetValue(source)!, parse.GetValue(output)!, parse.GetValue(size));
            ctx.Result(manifest, w => w.WriteLine(
                $"imported {manifest.Name}: {manifest.Splits["train"].Count} train + {manifest.Splits["test"].Count} test images of " +
                $"{manifest.Channels}x{manifest.Height}x{manifest.Width}, {manifest.Classes.Count} classes -> {parse.GetValue(output)}"));
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }

    private static Command Prepare(TextWriter stdout, TextWriter stderr)
    {
        var dataDir = new Option<string>("--data") { Description = "Dataset directory to create (kept if it exists)", Required = true };
        var partitions = new Option<string>("--partitions") { Description = "Partition file to create (kept if it exists with the same K)",
            Required = true };
        var k = new Option<int>("--k") { Description = "Number of partitions (experts)", DefaultValueFactory = _ => 4 };
        var command = new Command("prepare", "Import Fashion-MNIST (or, when it is not installed, synthetic shapes) and partition it: the one-shot " +
            "step before islands start")
        {
            dataDir, partitions, k,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, (ctx, parse, _) =>
        {
            IslandsCli.InitTorch(parse);
            var dataset = DataPreparation.Prepare(parse.GetValue(dataDir)!, parse.GetValue(partitions)!, parse.GetValue(k), ctx.Log);
            ctx.Result(new { data = parse.GetValue(dataDir), partitions = parse.GetValue(partitions), dataset = dataset.Manifest.Name,
                train = dataset.Train.Count, k = parse.GetValue(k) },
                w => w.WriteLine($"{parse.GetValue(dataDir)}: {dataset.Manifest.Name}, {dataset.Train.Count} training images; " +
                $"{parse.GetValue(partitions)}: K={parse.GetValue(k)}"));
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }

    private static Command Partition(TextWriter stdout, TextWriter stderr)
    {
        var dataDir = new Option<string>("--data") { Description = "Dataset directory", Required = true };
        var k = new Option<int>("--k") { Description = "Number of partitions (experts)", Required = true };
        var output = new Option<string>("--out") { Description = "Partition file to write (JSON)", Required = true };
        var fine = new Option<int>("--fine") { Description = "Fine k-means centroids before the balanced merge", DefaultValueFactory = _ => 1024 };
        var dims = new Option<int>("--dims") { Description = "PCA embedding dimensions", DefaultValueFactory = _ => 64 };
        var tolerance = new Option<double>("--tolerance") { Description = "Balance tolerance: no partition exceeds (1+tol)·N/K",
            DefaultValueFactory = _ => 0.05 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 0 };
        var method = new Option<string>("--method") { Description = "kmeans (DDM's clustering) or random (equal random shards, the baseline)",
            DefaultValueFactory = _ => "kmeans" };
        method.AcceptOnlyFromAmong("kmeans", "random");
        var command = new Command("partition", "Cluster the training images into K balanced partitions")
        {
            dataDir, k, output, fine, dims, tolerance, seed, method
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, (ctx, parse, _) =>
        {
            var options = new PartitionOptions(parse.GetValue(k), parse.GetValue(fine), parse.GetValue(dims), parse.GetValue(tolerance),
                parse.GetValue(seed), parse.GetValue(method)!);
            Diffusion.ConfigException.ThrowFirst(options.Validate());
            IslandsCli.InitTorch(parse);
            var dataset = CanonicalDataset.Load(parse.GetValue(dataDir)!);
            var file = Partitioner.Partition(dataset.Train, dataset.Manifest.Classes, options, Path.GetFullPath(dataset.Directory));
            file.Save(parse.GetValue(output)!);
            var summary = new
            {
                file = parse.GetValue(output),
                file.Method,
                file.K,
                file.FineClusters,
                file.BalanceTolerance,
                file.Sizes,
                classes = file.Classes,
                classHistogram = file.ClassHistogram,
            };
            ctx.Result(summary, w =>
            {
                w.WriteLine($"{file.Method} partition of {file.Assignments.Length} images into K={file.K} (fine clusters {file.FineClusters}, " +
                    $"tolerance {file.BalanceTolerance:P0}) -> {parse.GetValue(output)}");
                var header = "cluster  size   " + string.Join(" ", file.Classes.Select(c => Short(c).PadLeft(7)));
                w.WriteLine(header);
                for (var c = 0; c < file.K; c++)
                    w.WriteLine($"{c,7}  {file.Sizes[c],5}  " + string.Join(" ", file.ClassHistogram[c].Select(h =>
                        h.ToString(System.Globalization.CultureInfo.InvariantCulture).PadLeft(7))));
            });
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }

    private static string Short(string name) => name.Length <= 7 ? name : name[..7];
}
