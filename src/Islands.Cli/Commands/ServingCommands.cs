using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Islands.Diffusion;
using Islands.Diffusion.IO;
using Islands.Hosting;
using Microsoft.Extensions.Hosting;

namespace Islands.Cli.Commands;

/// <summary><c>islands serve</c> (one node of the serving cluster) and <c>islands generate</c> (its HTTP client).</summary>
public static class ServingCommands
{
    public const string ApiKeyVariable = "ISLANDS_API_KEY";

    public static Command Serve(TextWriter stdout, TextWriter stderr)
    {
        var config = new Option<string?>("--config") { Description = "JSON file over config/serving.json" };
        var akkaConfig = new Option<string?>("--akka-config")
        {
            Description = "HOCON file of akka.* over hocon/serving.conf (islands:serving:akkaConfig)"
        };
        var store = new Option<string?>("--store") { Description = "Checkpoint store the islands publish into (islands:serving:store)" };
        var hostname = new Option<string?>("--hostname") { Description = "Remoting address to bind (islands:serving:hostname)" };
        var port = new Option<int?>("--port") { Description = "Remoting port; seed nodes need fixed ports (islands:serving:port)" };
        var seeds = new Option<string?>("--seed-nodes")
        {
            Description = "Static seed nodes (tests; a restarted first seed can form a second cluster): use --contact-points"
        };
        var contacts = new Option<string?>("--contact-points")
        {
            Description = "HTTP endpoints host:port of every serving node, this one included (islands:serving:bootstrap:contactPoints)"
        };
        var httpPort = new Option<int?>("--http-port") { Description = "Port of the API (islands:serving:http:port)" };
        var precision = new Option<string?>("--precision") { Description = "fp32 or bf16 arithmetic for the experts (islands:serving:precision)" };
        var sources = new Option<string?>("--sources")
        {
            Description = "Island nodes' HTTP endpoints to fetch publications from into --store, for islands that share no filesystem with serving " +
                "(islands:serving:sources:endpoints; key from ISLANDS_SOURCE_KEY)",
        };
        var command = new Command("serve", "Run one node of the serving cluster: sharded router and sampler actors behind the generation API")
        {
            config, akkaConfig, store, hostname, port, seeds, contacts, httpPort, precision, sources,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, async (ctx, parse, cancel) =>
        {
            var options = new Dictionary<string, string?>
            {
                ["islands:serving:store"] = parse.GetValue(store),
                ["islands:serving:akkaConfig"] = parse.GetValue(akkaConfig) is { } a ? Path.GetFullPath(a) : null,
                ["islands:serving:hostname"] = parse.GetValue(hostname),
                ["islands:serving:port"] = parse.GetValue(port)?.ToString(CultureInfo.InvariantCulture),
                ["islands:serving:seedNodes"] = parse.GetValue(seeds),
                ["islands:serving:bootstrap:contactPoints"] = parse.GetValue(contacts),
                ["islands:serving:http:port"] = parse.GetValue(httpPort)?.ToString(CultureInfo.InvariantCulture),
                ["islands:serving:precision"] = parse.GetValue(precision),
                ["islands:serving:sources:endpoints"] = parse.GetValue(sources),
            };
            var settings = ServingNodeConfig.Parse(ServingNodeConfig.Load(parse.GetValue(config), options));
            IslandsCli.InitTorch(parse);
            await using var app = ServingNode.Build(settings);
            await app.StartAsync(cancel);
            var reads = settings.Sources.Enabled ? $"fetching from {settings.Sources.Endpoints.Count} island endpoints into {settings.Serving.Store}"
                : $"store {settings.Serving.Store}";
            ctx.Log($"serving {settings.SystemName}: node up; {reads}; API at {IslandNode.HttpAddress(app)}/v1 " +
                    $"({settings.ApiKeys.Count} API key{(settings.ApiKeys.Count == 1 ? "" : "s")}" +
                    $"{(settings.AllowAnonymous ? ", anonymous allowed" : "")}); OpenAPI at /openapi/v1.json");
            if (ServingNode.ViewerAddress(app) is { } viewer)
                ctx.Log($"viewer at {viewer} (sign in with an API key; {settings.Viewer!.Islands.Count} island endpoint(s) watched)");
            using var stop = cancel.Register(() => app.Lifetime.StopApplication());
            await app.WaitForShutdownAsync(CancellationToken.None);
            return ExitCodes.Ok;
        }));
        return command;
    }

    public static Command Generate(TextWriter stdout, TextWriter stderr)
    {
        var url = new Option<string>("--url") { Description = "Any serving node, e.g. http://127.0.0.1:8080", Required = true };
        var count = new Option<int>("--count") { Description = "Images (1-256)", DefaultValueFactory = _ => 16 };
        var cls = new Option<string?>("--class") { Description = "Class index or name; omit for unconditional" };
        var steps = new Option<int>("--steps") { Description = "ODE steps (1-200)", DefaultValueFactory = _ => 20 };
        var sampler = new Option<string>("--sampler") { Description = "euler or heun (two evaluations a step)", DefaultValueFactory = _ => "euler" };
        sampler.AcceptOnlyFromAmong("euler", "heun");
        var cfg = new Option<double>("--cfg") { Description = "Classifier-free guidance scale (0-20; 1 = none)", DefaultValueFactory = _ => 1.0 };
        var strategy = new Option<string>("--strategy") { Description = "top1, top2, topk:N, full or threshold:P",
            DefaultValueFactory = _ => "top1" };
        var seed = new Option<long?>("--seed") { Description = "Seed (default: chosen by the server, reported back)" };
        var output = new Option<string>("--out") { Description = "PNG grid to write", Required = true };
        var trace = new Option<string?>("--trace") { Description = "Also write the JSON answer (routing trace, timings, checkpoints) here" };
        var key = new Option<string?>("--idempotency-key")
        {
            Description = "Makes a retried request return the same result (default: a new key per invocation, reused on retry)"
        };
        var command = new Command("generate", $"Ask a serving cluster for images (the API key comes from {ApiKeyVariable})")
        {
            url, count, cls, steps, sampler, cfg, strategy, seed, output, trace, key,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, async (ctx, parse, cancel) =>
        {
            var apiKey = Environment.GetEnvironmentVariable(ApiKeyVariable);
            object? classValue = parse.GetValue(cls) is { } c
                ? int.TryParse(c, NumberStyles.None, CultureInfo.InvariantCulture, out var index) ? index : c
                : null;
            var body = new Dictionary<string, object?>
            {
                ["count"] = parse.GetValue(count), ["class"] = classValue, ["steps"] = parse.GetValue(steps), ["cfg"] = parse.GetValue(cfg),
                ["strategy"] = parse.GetValue(strategy), ["sampler"] = parse.GetValue(sampler), ["seed"] = parse.GetValue(seed), ["format"] = "json",
            };
            var idempotency = parse.GetValue(key) ?? Guid.NewGuid().ToString("N");
            // Transport failures, 429 and 5xx are retried with the same Idempotency-Key: the server answers a repeat from its stored result.
            using var client = GenerationClient.Create(parse.GetValue(url)!, apiKey, TimeSpan.FromMinutes(10), log: ctx.Log);
            var address = client.BaseAddress + "v1/generations";
            var (status, reason, bytes) = await client.GenerateAsync(body, idempotency, cancel);
            var text = System.Text.Encoding.UTF8.GetString(bytes);
            if ((int)status is < 200 or > 299)
            {
                var detail = GenerationClient.Describe(bytes);
                var message = $"{address}: {(int)status} {reason}: {detail}";
                if ((int)status == 401) message += $" (set {ApiKeyVariable})";
                throw new IslandsException(message);
            }
            var result = JsonSerializer.Deserialize<GenerationApi.GenerationResult>(text, Diffusion.IO.Json.Web)
                ?? throw new IslandsException($"{address}: empty answer");
            byte[] Decode(byte[] png) =>
                result.Channels == 3 ? Diffusion.Imaging.ImageGrid.DecodeRgb(png).Pixels : Diffusion.Imaging.ImageGrid.DecodeGrey(png).Pixels;
            var pixels = result.Images.Select(Convert.FromBase64String).SelectMany(Decode).ToArray();
            Diffusion.Imaging.ImageGrid.SavePng(parse.GetValue(output)!, pixels, result.Count, result.Channels, result.Height, result.Width);
            if (parse.GetValue(trace) is { } tracePath) AtomicFile.WriteAllText(tracePath, text);
            ctx.Result(new { output = parse.GetValue(output), result.Id, result.Count, result.Seed, result.Strategy, result.Sampler,
                    result.ImageStepsByExpert, result.LeftOutExperts, result.Retries, result.Timings },
                w => w.WriteLine($"wrote {result.Count} images to {parse.GetValue(output)} (generation {result.Id}, seed {result.Seed}, " +
                                 $"images·steps per expert [{string.Join(", ", result.ImageStepsByExpert)}]" +
                                 $"{(result.Degraded ? $", DEGRADED: experts {string.Join(",", result.LeftOutExperts)} left out" : "")}, " +
                                 $"{result.Timings.TotalSeconds:F2} s)"));
            return ExitCodes.Ok;
        }));
        return command;
    }
}
