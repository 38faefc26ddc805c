using System.CommandLine;
using Islands.Diffusion.Data;
using Islands.Diffusion.Imaging;
using Islands.Diffusion.IO;
using Islands.Diffusion.Runtime;
using Islands.Diffusion.Sampling;
using Islands.Diffusion.Training;

namespace Islands.Cli.Commands;

public static class SampleCommand
{
    public static readonly Option<int> Steps = new("--steps") { Description = "ODE steps", DefaultValueFactory = _ => 20 };
    public static readonly Option<double> Cfg = new("--cfg") { Description = "Classifier-free guidance scale (1 = none, 0 = unconditional)", DefaultValueFactory = _ => 1.0 };
    public static readonly Option<string> Sampler = new("--sampler") { DefaultValueFactory = _ => "euler" };
    public static readonly Option<long> Seed = new("--seed") { DefaultValueFactory = _ => 0 };

    static SampleCommand()
    {
        Sampler.AcceptOnlyFromAmong("euler", "heun");
    }

    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var model = new Option<string>("--model") { Description = "Run directory of a trained expert", Required = true };
        var count = new Option<int>("--count") { DefaultValueFactory = _ => 64 };
        var cls = new Option<string?>("--class") { Description = "Class index or name; 'all' cycles through the classes; omit for unconditional" };
        var output = new Option<string>("--out") { Description = "PNG grid to write", Required = true };
        var raw = new Option<string?>("--raw") { Description = "Also write the samples as a float32 .npy [N, C, H, W] in [-1, 1]" };
        var command = new Command("sample", "Sample a grid of images from a trained model") { model, count, cls, Steps, Cfg, Sampler, Seed, output, raw };
        command.SetAction(IslandsCli.Action(stdout, stderr, (ctx, parse, _) =>
        {
            var n = parse.GetValue(count);
            if (n is < 1 or > 100_000) throw new Diffusion.ConfigException("--count", $"{n} must lie in 1..100000");
            var options = new SamplerOptions(parse.GetValue(Steps), parse.GetValue(Sampler)!, parse.GetValue(Cfg), parse.GetValue(Seed));
            options.ThrowIfInvalid();
            var run = new RunDirectory(parse.GetValue(model)!);
            var config = run.LoadConfig();
            IslandsCli.InitTorch(parse);
            var classes = ResolveClasses(parse.GetValue(cls), n, config.DataDirectory, config.ModelOrDefault.ClassCount);
            var (unet, step, checkpoint) = run.LoadModel(warn: ctx.Log);
            using var ownedModel = unet;
            var m = config.ModelOrDefault;
            var watch = System.Diagnostics.Stopwatch.StartNew();
            using var samples = FlowSampler.Sample(unet, n, classes, options, (m.ImageChannels, m.ImageSize, m.ImageSize));
            var seconds = watch.Elapsed.TotalSeconds;
            var bytes = ImageTensors.ToBytes(samples);
            ImageGrid.SavePng(parse.GetValue(output)!, bytes, n, m.ImageChannels, m.ImageSize, m.ImageSize);
            if (parse.GetValue(raw) is { } rawPath)
                Npy.WriteFloat32(rawPath, samples.contiguous().data<float>().ToArray(), samples.shape);
            var result = new { output = parse.GetValue(output), count = n, checkpoint, step, evaluationsPerImage = options.EvaluationsPerImage(classes is not null), seconds };
            ctx.Result(result, w => w.WriteLine($"wrote {n} samples from step {step} to {parse.GetValue(output)} ({result.evaluationsPerImage} network evaluations per image, {seconds:F1} s)"));
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }

    /// <summary>Class option: an index, a class name from the dataset's manifest, 'all' (cycle), or absent (unconditional).</summary>
    public static long[]? ResolveClasses(string? value, int count, string dataDirectory, int classCount)
    {
        if (value is null) return null;
        if (value == "all") return Enumerable.Range(0, count).Select(i => (long)(i % classCount)).ToArray();
        if (int.TryParse(value, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var index))
        {
            if (index < 0 || index >= classCount) throw new Diffusion.ConfigException("--class", $"{index} is outside 0..{classCount - 1}");
            return Enumerable.Repeat((long)index, count).ToArray();
        }
        var manifestPath = Path.Combine(dataDirectory, DatasetManifest.FileName);
        var names = File.Exists(manifestPath) ? Json.Read<DatasetManifest>(manifestPath).Classes : [];
        var match = names.Select((name, i) => (name, i)).FirstOrDefault(x => string.Equals(x.name, value, StringComparison.OrdinalIgnoreCase));
        if (match.name is null) throw new Diffusion.ConfigException("--class", $"'{value}' is neither an index nor one of: {string.Join(", ", names)}");
        return Enumerable.Repeat((long)match.i, count).ToArray();
    }
}
