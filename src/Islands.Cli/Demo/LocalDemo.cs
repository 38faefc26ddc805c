using System.Collections;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Islands.Hosting;
using Islands.Hosting.Configuration;
using Islands.Diffusion;
using Islands.Diffusion.Data;
using Islands.Diffusion.Imaging;
using Islands.Diffusion.IO;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;

namespace Islands.Cli.Demo;

/// <summary>
/// The demo's frozen plan, saved as demo.json in its working directory on the first run and reused by every rerun
/// (so a rerun resumes the same jobs, whatever --minutes says).
/// </summary>
public sealed record DemoPlan(int SchemaVersion, string DataSource, int K, int ExpertSteps, int RouterSteps, int BatchSize, string Precision,
    int CheckpointEvery, DateTimeOffset CreatedUtc, bool DegradedCondition = false)
{
    public const int CurrentSchemaVersion = 1;
    public const string FileName = "demo.json";
}

/// <summary>
/// The whole system on one machine, in one process, on the embedded defaults: the dataset (Fashion-MNIST, or the
/// synthetic shapes when it is not installed), K partitions, one single-node island per expert plus the router island
/// (Akka clusters on loopback, SQLite journals, one checkpoint store), then a serving node whose HTTP API the demo calls
/// as any client would. Everything lives under one working directory, so a rerun resumes.
/// </summary>
/// <param name="viewerPort">Port of the serving node's live viewer (0: a free one).</param>
public sealed partial class LocalDemo(string work, int httpPortBase, int viewerPort, Action<string> log) : IAsyncDisposable
{
    private readonly List<(string Island, string Job, WebApplication App)> islands = [];
    private readonly Dictionary<string, DemoIslandState> lastKnown = [];
    private readonly HashSet<string> stopped = [];
    private WebApplication? serving;

    public string Work { get; } = Path.GetFullPath(work);
    public string Store => Path.Combine(Work, "islands");
    public string DataDirectory => Path.Combine(Work, "data");
    public string PartitionsFile => Path.Combine(Work, "partitions.json");
    public string ApiKeyFile => Path.Combine(Work, "api-key");
    public string? ApiUrl { get; private set; }
    public string? ViewerUrl { get; private set; }
    public DemoPlan Plan { get; private set; } = null!;

    /// <summary>Data, partitions and the frozen plan: created on the first run, reused afterwards.</summary>
    /// <param name="degradedCondition">The experts and the router also learn the degraded condition (for `islands distill`); fixed on the
    /// first run.</param>
    public DemoPlan Prepare(double minutes, int k, bool degradedCondition = false)
    {
        Directory.CreateDirectory(Work);
        var planPath = Path.Combine(Work, DemoPlan.FileName);
        var dataset = DataPreparation.Prepare(DataDirectory, PartitionsFile, k, log);
        if (File.Exists(planPath))
        {
            Plan = Json.Read<DemoPlan>(planPath);
            if (Plan.SchemaVersion != DemoPlan.CurrentSchemaVersion)
                throw new ConfigException(planPath, $"schemaVersion {Plan.SchemaVersion} is not supported; use a new --work directory");
            log($"resuming the demo in {Work} ({Plan.DataSource}, K={Plan.K}, {Plan.ExpertSteps} steps per expert, as planned on its first run)");
        }
        else
        {
            // About 45 bf16 steps of batch 64 per expert per budgeted minute fill a 2-core machine with four experts and
            // the router training side by side; the time budget below stops them anyway, and a rerun continues. bf16 only
            // where the CPU computes it: on one without AVX-512 BF16 or AMX it trained at 0.04x fp32's speed.
            var steps = Math.Max(20, (int)Math.Round(minutes * 45));
            var precision = Diffusion.Numerics.NumericsPolicy.FastestPrecision();
            log($"training and serving in {precision}{(precision == "fp32" ? " (this CPU does not compute bf16 in hardware)" : "")}");
            Plan = new DemoPlan(DemoPlan.CurrentSchemaVersion, dataset.Manifest.Name, k, steps, Math.Max(100, steps * 2), 64, precision,
                Math.Max(10, steps / 10), DateTimeOffset.UtcNow, degradedCondition);
            Json.WriteAtomic(planPath, Plan);
        }
        return Plan;
    }

    /// <summary>Starts one single-node island per expert and the router island (each resumes from its journal).</summary>
    public async Task StartIslandsAsync(CancellationToken cancel)
    {
        var config = Path.Combine(Work, "islands.json");
        await File.WriteAllTextAsync(config, ConfigurationJson.From([("islands:store", Store), ("islands:training:dataDirectory", DataDirectory),
            ("islands:training:partitionsFile", PartitionsFile)]), cancel);
        var jobs = Enumerable.Range(0, Plan.K).Select(k => ($"expert-{k}", $"expert:{k}")).Append(("router", "router")).ToList();
        for (var i = 0; i < jobs.Count; i++)
        {
            var (island, job) = jobs[i];
            var training = job == "router"
                ? new Dictionary<string, string?> { ["islands:training:steps"] = Str(Plan.RouterSteps),
                    ["islands:training:checkpointEvery"] = Str(Math.Max(50, Plan.RouterSteps / 4)), ["islands:training:expertCount"] = Str(Plan.K),
                    ["islands:training:degradedCondition"] = Plan.DegradedCondition ? "true" : null }
                : new Dictionary<string, string?>
                {
                    ["islands:training:steps"] = Str(Plan.ExpertSteps), ["islands:training:checkpointEvery"] = Str(Plan.CheckpointEvery),
                    ["islands:training:batchSize"] = Str(Plan.BatchSize), ["islands:training:precision"] = Plan.Precision,
                    ["islands:training:warmupSteps"] = Str(Math.Min(100, Plan.ExpertSteps / 5)),
                    ["islands:training:model:degradedCondition"] = Plan.DegradedCondition ? "true" : null,
                };
            var options = new Dictionary<string, string?>(training)
            {
                ["islands:island"] = island,
                ["islands:job"] = job,
                ["islands:http:port"] = Str(httpPortBase == 0 ? 0 : httpPortBase + 1 + i),
                // The experts train side by side: each gets its share of the cores.
                ["islands:torchThreads"] = Str(Math.Max(1, Environment.ProcessorCount / Plan.K)),
            };
            var settings = IslandNodeConfig.Parse(IslandNodeConfig.Load(config, options, new Hashtable()));
            var app = IslandNode.Build(settings, l => l.SetMinimumLevel(LogLevel.Error));
            await app.StartAsync(cancel);
            islands.Add((island, job, app));
        }
    }

    private static string Str(int value) => value.ToString(CultureInfo.InvariantCulture);

    private long TotalSteps(string job) => job == "router" ? Plan.RouterSteps : Plan.ExpertSteps;

    /// <summary>
    /// Every island as its own /status says, or, for an island this demo stopped, as it last said with the checkpoint it
    /// published. Nothing is made up: a value that is not known is null.
    /// </summary>
    public async Task<IReadOnlyList<DemoIslandState>> IslandStatesAsync(CancellationToken cancel)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var states = new List<DemoIslandState>();
        foreach (var (island, job, app) in islands)
        {
            if (stopped.Contains(island))
            {
                states.Add(Stopped(island, job));
                continue;
            }
            var url = IslandNode.HttpAddress(app) + "/status";
            DemoIslandState state;
            try
            {
                var status = await http.GetFromJsonAsync<IslandStatus>(url, Json.Options, cancel);
                state = status?.Job is { } j
                    ? new DemoIslandState(island, job, j.Phase, j.Step, j.TotalSteps > 0 ? j.TotalSteps : TotalSteps(job), j.Loss, j.ImagesPerSecond,
                        j.LastCheckpoint?.Step, j.LastCheckpoint?.Loss, url)
                    : new DemoIslandState(island, job, "unknown", null, TotalSteps(job), null, 0,
                        lastKnown.GetValueOrDefault(island)?.LastCheckpointStep, lastKnown.GetValueOrDefault(island)?.LastCheckpointLoss, url,
                        status?.JobError ?? "the node answered without its job");
            }
            catch (Exception e) when (e is HttpRequestException or JsonException or TaskCanceledException && !cancel.IsCancellationRequested)
            {
                state = new DemoIslandState(island, job, "unreachable", null, TotalSteps(job), null, 0,
                    lastKnown.GetValueOrDefault(island)?.LastCheckpointStep, lastKnown.GetValueOrDefault(island)?.LastCheckpointLoss, url,
                    $"{url}: {e.Message}");
            }
            if (state.Phase is not ("unreachable" or "unknown")) lastKnown[island] = state;
            states.Add(state);
        }
        return states;
    }

    /// <summary>A stopped island: its last report, with the checkpoint it published (it commits and publishes as it stops).</summary>
    private DemoIslandState Stopped(string island, string job)
    {
        var last = lastKnown.GetValueOrDefault(island)
            ?? new DemoIslandState(island, job, "unknown", null, TotalSteps(job), null, 0, null, null, null);
        try
        {
            var (published, _) = Diffusion.Checkpoints.PublishedCheckpoint.ReadVerified(Path.Combine(Store, island));
            // The loss is only known for the checkpoint the island last reported (published.json writes a NaN loss as null).
            var loss = published.Step == last.LastCheckpointStep ? last.LastCheckpointLoss : published.Loss;
            return last with { LastCheckpointStep = published.Step, LastCheckpointLoss = loss, StatusUrl = null, Stopped = true,
                ImagesPerSecond = 0 };
        }
        catch (Exception e) when (e is IslandsException or IOException)
        {
            return last with { LastCheckpointStep = null, LastCheckpointLoss = null, StatusUrl = null, Stopped = true, ImagesPerSecond = 0,
                Error = e.Message };
        }
    }

    /// <summary>The islands that have no usable model, each with the reason (empty when every island has one).</summary>
    public static IReadOnlyList<string> UnusableIslands(IEnumerable<DemoIslandState> states) =>
        [.. states.Select(s => s.Unusable()).OfType<string>()];

    /// <summary>Stops the islands that have not finished: each commits and publishes its current step first.</summary>
    public async Task StopUnfinishedIslandsAsync(IReadOnlyList<DemoIslandState> states)
    {
        foreach (var state in states.Where(s => s.Phase != "completed" && !stopped.Contains(s.Island)))
        {
            var (_, _, app) = islands.Single(i => i.Island == state.Island);
            log($"{state.Island}: time budget reached at step {StatusText.Steps(state.Step, state.TotalSteps)} (phase {state.Phase}); committing " +
                "and stopping (a rerun continues)");
            await app.StopAsync();
            stopped.Add(state.Island);
        }
    }

    /// <summary>Starts a serving node on the store, with an API key kept in work/api-key (created on the first run).</summary>
    public async Task StartServingAsync(CancellationToken cancel)
    {
        ApiKeyAuthentication.EnsureKeyFile(ApiKeyFile);
        var options = new Dictionary<string, string?>
        {
            ["islands:serving:store"] = Store,
            ["islands:serving:results"] = Path.Combine(Work, "serving-results"),
            ["islands:serving:http:port"] = Str(httpPortBase),
            ["islands:serving:apiKeysFile"] = ApiKeyFile,
            ["islands:serving:precision"] = Plan.Precision,
            ["islands:serving:viewer:port"] = Str(viewerPort),
            ["islands:serving:viewer:islands"] = string.Join(",", islands.Select(i => IslandNode.HttpAddress(i.App))),
            // The islands publish as they train: the viewer's gallery follows within seconds, not the default 10 s.
            ["islands:serving:rescanInterval"] = "3s",
        };
        var settings = ServingNodeConfig.Parse(ServingNodeConfig.Load(null, options, new Hashtable()));
        serving = ServingNode.Build(settings, l => l.SetMinimumLevel(LogLevel.Error));
        await serving.StartAsync(cancel);
        ApiUrl = IslandNode.HttpAddress(serving);
        ViewerUrl = ServingNode.ViewerAddress(serving);
    }

    /// <summary>Asks the API for `perClass` images of every class, as a client would, and writes them as one grid (a row per class).</summary>
    public async Task<(int Images, IReadOnlyList<string> Classes, double Seconds)> GenerateAsync(string output, int perClass, int steps,
        CancellationToken cancel)
    {
        var key = (await File.ReadAllTextAsync(ApiKeyFile, cancel)).Trim();
        using var client = GenerationClient.Create(ApiUrl!, key, TimeSpan.FromMinutes(10));
        var classes = CanonicalDataset.Load(DataDirectory).Manifest.Classes;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        // One request per class, all at once: the router batches them into shared steps.
        var answers = await Task.WhenAll(classes.Select(async (_, c) =>
        {
            var request = new { count = perClass, @class = c, steps, seed = c, format = "json" };
            var (status, _, body) = await client.GenerateAsync(request, $"demo-{c}-{perClass}-{steps}", cancel);
            var text = System.Text.Encoding.UTF8.GetString(body);
            if ((int)status is < 200 or > 299) throw new IslandsException($"{ApiUrl}/v1/generations: {(int)status}: {text}");
            return JsonDocument.Parse(text).RootElement.Clone();
        }));
        var seconds = clock.Elapsed.TotalSeconds;
        var pixels = new List<byte>();
        var side = 0;
        var problems = new List<string>();
        for (var c = 0; c < answers.Length; c++)
        {
            var images = answers[c].GetProperty("images").EnumerateArray().Select(i => ImageGrid.DecodeGrey(i.GetBytesFromBase64())).ToList();
            var nonFinite = answers[c].TryGetProperty("nonFiniteImages", out var n) && n.ValueKind == JsonValueKind.Number ? n.GetInt32() : 0;
            if (ImageCheck(classes[c], images.Count, nonFinite, images.Count(i => IsConstant(i.Pixels))) is { } problem) problems.Add(problem);
            foreach (var (grey, width, _) in images)
            {
                pixels.AddRange(grey);
                side = width;
            }
        }
        if (problems.Count > 0)
            throw new IslandsException($"the sampled images are not usable, so no grid was written: {string.Join("; ", problems)}");
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
        ImageGrid.SavePng(output, [.. pixels], classes.Count * perClass, 1, side, side, columns: perClass);
        return (classes.Count * perClass, classes, seconds);
    }

    /// <summary>What is wrong with one class's sampled images (non-finite values, one flat colour), or null if nothing is.</summary>
    public static string? ImageCheck(string className, int images, int nonFinite, int constant)
    {
        var wrong = new List<string>();
        if (images == 0) wrong.Add("no images came back");
        if (nonFinite > 0) wrong.Add($"{nonFinite} of {images} hold NaN or infinite values");
        if (constant > 0) wrong.Add($"{constant} of {images} are one flat colour");
        return wrong.Count == 0 ? null : $"class '{className}': {string.Join(", ", wrong)}";
    }

    /// <summary>Whether every pixel of an image has the same value (what a NaN model's images become once quantised).</summary>
    public static bool IsConstant(ReadOnlySpan<byte> pixels) => pixels.Length == 0 || !pixels.ContainsAnyExcept(pixels[0]);

    public async ValueTask DisposeAsync()
    {
        if (serving is not null)
        {
            await serving.StopAsync();
            await serving.DisposeAsync();
        }
        foreach (var (_, _, app) in islands)
        {
            // Graceful: a node still training commits its current step before it leaves.
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }
}
