using System.CommandLine;
using System.Globalization;
using Islands.Diffusion.Configs;
using Islands.Diffusion.Data;
using Islands.Diffusion.IO;
using Islands.Diffusion.Partitioning;
using Islands.Diffusion.Routing;
using Islands.Diffusion.Runtime;
using Islands.Diffusion.Training;

namespace Islands.Cli.Commands;

public static class TrainCommands
{
    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var train = new Command("train", "Train experts (and, later, routers)");
        train.Add(Expert(stdout, stderr));
        train.Add(Router(stdout, stderr));
        return train;
    }

    private static Command Expert(TextWriter stdout, TextWriter stderr)
    {
        var data = new Option<string>("--data") { Description = "Dataset directory", Required = true };
        var partitions = new Option<string?>("--partitions") { Description = "Partition file; omit to train the monolith on all images" };
        var expert = new Option<int?>("--expert") { Description = "Partition index k that this expert learns" };
        var steps = new Option<int>("--steps") { DefaultValueFactory = _ => 2000 };
        var batch = new Option<int>("--batch") { DefaultValueFactory = _ => 64 };
        var output = new Option<string>("--out") { Description = "Run directory (rerunning with the same --out resumes)", Required = true };
        var lr = new Option<double>("--lr") { DefaultValueFactory = _ => 2e-3 };
        var warmup = new Option<int>("--warmup") { DefaultValueFactory = _ => 100 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 0 };
        var every = new Option<int>("--checkpoint-every") { DefaultValueFactory = _ => 500 };
        var keep = new Option<int>("--keep") { Description = "Checkpoints to keep", DefaultValueFactory = _ => 3 };
        var ema = new Option<double>("--ema") { Description = "EMA decay of the weights used for sampling", DefaultValueFactory = _ => 0.999 };
        var tSampling = new Option<string>("--t-sampling") { DefaultValueFactory = _ => "logit-normal" };
        tSampling.AcceptOnlyFromAmong("uniform", "logit-normal");
        var labelDropout = new Option<double>("--label-dropout") { Description = "Probability of training on the null class (enables guidance)",
            DefaultValueFactory = _ => 0.1 };
        var channels = new Option<int>("--base-channels") { DefaultValueFactory = _ => 32 };
        var mults = new Option<string>("--channel-mults") { Description = "Comma-separated width multipliers per resolution",
            DefaultValueFactory = _ => "1,2,4" };
        var precision = new Option<string>("--precision") { DefaultValueFactory = _ => "fp32" };
        precision.AcceptOnlyFromAmong("fp32", "bf16");
        var degraded = new Option<bool>("--degraded-condition")
        {
            Description = "Also learn \"degraded, class c\" from corrupted copies of the data (score distillation's calibrated source)",
        };

        var command = new Command("expert", "Train a flow-matching expert on one partition (or the monolith on all data)")
        {
            data, partitions, expert, steps, batch, output, lr, warmup, seed, every, keep, ema, tSampling, labelDropout, channels, mults, precision,
            degraded,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, async (ctx, parse, cancel) =>
        {
            int[] multipliers;
            try
            {
                multipliers = parse.GetValue(mults)!.Split(',').Select(s => int.Parse(s.Trim(), CultureInfo.InvariantCulture)).ToArray();
            }
            catch (FormatException)
            {
                throw new Diffusion.ConfigException("--channel-mults", $"'{parse.GetValue(mults)}' must be comma-separated integers such as 1,2,4");
            }
            var config = new TrainConfig(
                Job: parse.GetValue(partitions) is null ? "monolith" : "expert",
                DataDirectory: Path.GetFullPath(parse.GetValue(data)!),
                PartitionsFile: parse.GetValue(partitions) is { } p ? Path.GetFullPath(p) : null,
                Expert: parse.GetValue(expert),
                Model: new ModelConfig(BaseChannels: parse.GetValue(channels), ChannelMultipliers: multipliers,
                    DegradedCondition: parse.GetValue(degraded)),
                Steps: parse.GetValue(steps), BatchSize: parse.GetValue(batch), LearningRate: parse.GetValue(lr), WarmupSteps: parse.GetValue(warmup),
                EmaDecay: parse.GetValue(ema), LabelDropout: parse.GetValue(labelDropout), TimeSampling: parse.GetValue(tSampling)!,
                Seed: parse.GetValue(seed), CheckpointEvery: parse.GetValue(every), KeepCheckpoints: parse.GetValue(keep),
                Precision: parse.GetValue(precision)!);
            config.ThrowIfInvalid();
            IslandsCli.InitTorch(parse);
            var device = TorchSetup.ResolveDevice(parse.GetValue(CommonOptions.Device)!);
            var runDir = parse.GetValue(output)!;
            var reporter = new ProgressReporter(ctx, $"train {(config.Expert is { } e ? $"expert {e}" : "monolith")}");
            var summary = await reporter.RunAsync(config.Steps, report => Task.Run(() => TrainingRun.Execute(config, runDir,
                p => report(p.Step, $"loss {p.Loss:F4} {p.ImagesPerSecond:F0} img/s"), ctx.Log, cancel, device)));
            ctx.Result(summary, w => w.WriteLine(summary.Completed
                ? $"trained {summary.Step} steps on {summary.TrainImages} images (loss {summary.FinalLoss:F4}, {summary.ImagesPerSecond:F0} " +
                    $"img/s); checkpoint {summary.LastCheckpoint}"
                : $"stopped at step {summary.Step}/{summary.TotalSteps}; checkpoint {summary.LastCheckpoint}; rerun the same command to resume"));
            return summary.Completed ? ExitCodes.Ok : ExitCodes.Cancelled;
        }));
        return command;
    }

    private static Command Router(TextWriter stdout, TextWriter stderr)
    {
        var data = new Option<string>("--data") { Description = "Dataset directory", Required = true };
        var partitions = new Option<string>("--partitions") { Description = "Partition file whose clusters the router predicts", Required = true };
        var steps = new Option<int>("--steps") { DefaultValueFactory = _ => 2000 };
        var batch = new Option<int>("--batch") { DefaultValueFactory = _ => 256 };
        var output = new Option<string>("--out") { Description = "Run directory (rerunning with the same --out resumes)", Required = true };
        var lr = new Option<double>("--lr") { DefaultValueFactory = _ => 1e-3 };
        var hidden = new Option<int>("--hidden") { DefaultValueFactory = _ => 256 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 0 };
        var every = new Option<int>("--checkpoint-every") { DefaultValueFactory = _ => 500 };
        var degraded = new Option<bool>("--degraded-condition")
        {
            Description = "Also learn \"degraded, class c\" from corrupted copies of the images, as experts trained with it do",
        };
        var command = new Command("router", "Train the router r(x_t, t, c) -> p(partition) with cross-entropy on the natural data distribution")
        {
            data, partitions, steps, batch, output, lr, hidden, seed, every, degraded,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, async (ctx, parse, cancel) =>
        {
            var partitionPath = Path.GetFullPath(parse.GetValue(partitions)!);
            var dataDir = Path.GetFullPath(parse.GetValue(data)!);
            var partitionFile = PartitionFile.Load(partitionPath);
            var manifest = Json.Read<DatasetManifest>(Path.Combine(dataDir, DatasetManifest.FileName));
            var config = new RouterConfig(DataDirectory: dataDir, PartitionsFile: partitionPath, ExpertCount: partitionFile.K,
                Hidden: parse.GetValue(hidden), ClassCount: manifest.Classes.Count, Steps: parse.GetValue(steps), BatchSize: parse.GetValue(batch),
                LearningRate: parse.GetValue(lr), Seed: parse.GetValue(seed), CheckpointEvery: parse.GetValue(every),
                DegradedCondition: parse.GetValue(degraded));
            config.ThrowIfInvalid();
            IslandsCli.InitTorch(parse);
            var reporter = new ProgressReporter(ctx, "train router");
            var summary = await reporter.RunAsync(config.Steps, report => Task.Run(() => RouterRun.Execute(config, parse.GetValue(output)!,
                p => report(p.Step, $"loss {p.Loss:F4} {p.ImagesPerSecond:F0} img/s"), ctx.Log, cancel)));
            ctx.Result(summary, w =>
            {
                w.WriteLine($"router trained {summary.Step} steps (loss {summary.FinalLoss:F4}, {summary.ImagesPerSecond:F0} img/s); checkpoint " +
                    $"{summary.LastCheckpoint}");
                foreach (var (title, bands) in new[] { ("held-out images", summary.HeldOut), ("their degraded copies", summary.HeldOutDegraded) })
                {
                    w.WriteLine($"{title + ", by band of t:",-33} accuracy    ECE   mean confidence");
                    foreach (var b in bands)
                        w.WriteLine($"  t in [{b.TMin:F1}, {b.TMax:F1})   n={b.Count,5}   {b.Accuracy,8:P1}  {b.ExpectedCalibrationError,6:F3}  " +
                            $"{b.MeanConfidence,8:P1}");
                }
            });
            return summary.Completed ? ExitCodes.Ok : ExitCodes.Cancelled;
        }));
        return command;
    }
}
