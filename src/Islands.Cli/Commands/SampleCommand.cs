using System.CommandLine;
using Islands.Diffusion.Data;
using Islands.Diffusion.Imaging;
using Islands.Diffusion.IO;
using Islands.Diffusion.Modules;
using Islands.Diffusion.Routing;
using Islands.Diffusion.Runtime;
using TorchSharp;
using static TorchSharp.torch;
using Islands.Diffusion.Sampling;
using Islands.Diffusion.Training;

namespace Islands.Cli.Commands;

public static class SampleCommand
{
    public static readonly Option<int> Steps = new("--steps") { Description = "ODE steps", DefaultValueFactory = _ => 20 };
    public static readonly Option<double> Cfg = new("--cfg") { Description = "Classifier-free guidance scale (1 = none, 0 = unconditional)",
        DefaultValueFactory = _ => 1.0 };
    public static readonly Option<string> Sampler = new("--sampler") { DefaultValueFactory = _ => "euler" };
    public static readonly Option<long> Seed = new("--seed") { DefaultValueFactory = _ => 0 };
    public static readonly Option<string> Precision = new("--precision")
    {
        Description = "Network arithmetic for sampling: fp32 or bf16 (the ODE state stays fp32)",
        DefaultValueFactory = _ => "fp32"
    };

    static SampleCommand()
    {
        Sampler.AcceptOnlyFromAmong("euler", "heun");
        Precision.AcceptOnlyFromAmong("fp32", "bf16");
    }

    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var model = new Option<string[]>("--model")
        {
            Description = "Run directory of a trained expert; repeat it (--model E0 --model E1 ...) for an ensemble",
            Required = true,
            Arity = ArgumentArity.OneOrMore
        };
        var router = new Option<string?>("--router")
        {
            Description = "Router run directory, or 'gaussian' for the training-free router (the default for an ensemble)"
        };
        var strategy = new Option<string>("--strategy") { Description = "full, top1, top2, topk:N, threshold:P, sample or oracle:K",
            DefaultValueFactory = _ => "top1" };
        var unavailable = new Option<int[]>("--unavailable") { Description = "Expert indices to treat as down (renormalise over the rest)",
            Arity = ArgumentArity.ZeroOrMore };
        var trace = new Option<string?>("--trace") { Description = "Write every sample's routing decision and weights at every step (JSON)" };
        var count = new Option<int>("--count") { DefaultValueFactory = _ => 64 };
        var cls = new Option<string?>("--class") { Description = "Class index or name; 'all' cycles through the classes; omit for unconditional" };
        var output = new Option<string>("--out") { Description = "PNG grid to write", Required = true };
        var raw = new Option<string?>("--raw") { Description = "Also write the samples as a float32 .npy [N, C, H, W] in [-1, 1]" };
        var command = new Command("sample", "Sample a grid from one model, or from an ensemble of experts routed at every step")
        {
            model, router, strategy, unavailable, trace, count, cls, Steps, Cfg, Sampler, Seed, Precision, output, raw,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, (ctx, parse, _) =>
        {
            var n = parse.GetValue(count);
            if (n is < 1 or > 100_000) throw new Diffusion.ConfigException("--count", $"{n} must lie in 1..100000");
            var options = new SamplerOptions(parse.GetValue(Steps), parse.GetValue(Sampler)!, parse.GetValue(Cfg), parse.GetValue(Seed));
            options.ThrowIfInvalid();
            var runs = parse.GetValue(model)!.Select(m => new RunDirectory(m)).ToList();
            var configs = runs.Select(r => r.LoadConfig()).ToList();
            var routing = RoutingStrategy.Parse(parse.GetValue(strategy)!);
            IslandsCli.InitTorch(parse);
            var first = configs[0];
            var classes = ResolveClasses(parse.GetValue(cls), n, first.DataDirectory, first.ModelOrDefault.ClassCount);
            var m = first.ModelOrDefault;
            var shape = m.Shape;
            var loaded = runs.Select(r => r.LoadModel(warn: ctx.Log)).ToList();
            try
            {
                var watch = System.Diagnostics.Stopwatch.StartNew();
                Tensor samples;
                object costs;
                if (runs.Count == 1 && parse.GetValue(router) is null)
                {
                    samples = FlowSampler.Sample(Bfloat16Velocity.ForPrecision(loaded[0].Model, parse.GetValue(Precision)!), n, classes,
                        options, shape);
                    costs = new { evaluationsPerImage = (double)options.EvaluationsPerImage(classes is not null), routerShareOfCost = 0.0,
                        expertEvaluations = Array.Empty<long>() };
                }
                else
                {
                    var ensembleRun = EnsembleSampling.Run(loaded.Select(l => l.Model).ToList(), configs, parse.GetValue(router) ?? "gaussian",
                        routing, parse.GetValue(unavailable) ?? [], parse.GetValue(trace) is not null, n, classes, options, shape, ctx.Log,
                        parse.GetValue(Precision)!);
                    samples = ensembleRun.Samples;
                    costs = ensembleRun.Costs;
                    if (parse.GetValue(trace) is { } tracePath) Json.WriteAtomic(tracePath, ensembleRun.Trace);
                }
                using var owned = samples;
                var seconds = watch.Elapsed.TotalSeconds;
                var bytes = ImageTensors.ToBytes(samples);
                ImageGrid.SavePng(parse.GetValue(output)!, bytes, n, m.ImageChannels, m.Height, m.Width);
                if (parse.GetValue(raw) is { } rawPath)
                    Npy.WriteFloat32(rawPath, samples.contiguous().data<float>().ToArray(), samples.shape);
                var result = new
                {
                    output = parse.GetValue(output), count = n, models = runs.Select(r => r.Path).ToArray(),
                    steps = loaded.Select(l => l.Step).ToArray(),
                    checkpoints = loaded.Select(l => l.Checkpoint).ToArray(), step = loaded[0].Step, checkpoint = loaded[0].Checkpoint,
                    strategy = runs.Count > 1 || parse.GetValue(router) is not null ? routing.ToString() : null, costs, seconds,
                };
                ctx.Result(result, w => w.WriteLine($"wrote {n} samples to {parse.GetValue(output)} in {seconds:F1} s; " +
                    $"{Diffusion.IO.Json.Serialize(costs, indented: false)}"));
            }
            finally
            {
                foreach (var l in loaded) l.Model.Dispose();
            }
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }

    /// <summary>
    /// Class option: an index, a class name from the dataset's manifest, 'all' (cycle through the dataset's classes), or
    /// absent (unconditional). A model may have room for more classes than its dataset has; only the dataset's are valid.
    /// </summary>
    public static long[]? ResolveClasses(string? value, int count, string dataDirectory, int classCount)
    {
        if (value is null) return null;
        var manifestPath = Path.Combine(dataDirectory, DatasetManifest.FileName);
        var names = File.Exists(manifestPath) ? Json.Read<DatasetManifest>(manifestPath).Classes : [];
        if (names.Count > 0) classCount = Math.Min(classCount, names.Count);
        if (value == "all") return Enumerable.Range(0, count).Select(i => (long)(i % classCount)).ToArray();
        if (int.TryParse(value, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var index))
        {
            if (index < 0 || index >= classCount) throw new Diffusion.ConfigException("--class", $"{index} is outside 0..{classCount - 1}");
            return Enumerable.Repeat((long)index, count).ToArray();
        }
        var match = names.Select((name, i) => (name, i)).FirstOrDefault(x => string.Equals(x.name, value, StringComparison.OrdinalIgnoreCase));
        if (match.name is null)
            throw new Diffusion.ConfigException("--class", $"'{value}' is neither an index nor one of: {string.Join(", ", names)}");
        return Enumerable.Repeat((long)match.i, count).ToArray();
    }
}
