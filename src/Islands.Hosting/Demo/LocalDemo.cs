using System.Collections;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Islands.Diffusion;
using Islands.Diffusion.Data;
using Islands.Diffusion.Imaging;
using Islands.Diffusion.IO;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;

namespace Islands.Hosting.Demo;

/// <summary>
/// The demo's frozen plan, saved as demo.json in its working directory on the first run and reused by every rerun
/// (so a rerun resumes the same jobs, whatever --minutes says).
/// </summary>
public sealed record DemoPlan(int SchemaVersion, string DataSource, int K, int ExpertSteps, int RouterSteps, int BatchSize, string Precision,
    int CheckpointEvery, DateTimeOffset CreatedUtc)
{
    public const int CurrentSchemaVersion = 1;
    public const string FileName = "demo.json";
}

/// <summary>One island of the demo as it is now.</summary>
public sealed record DemoIslandState(string Island, string Job, string Phase, long Step, long TotalSteps, float? Loss, double ImagesPerSecond,
    long? LastCheckpointStep, string? StatusUrl);

/// <summary>
/// The whole system on one machine, in one process, on the embedded defaults: the dataset (Fashion-MNIST, or the
/// synthetic shapes when it is not installed), K partitions, one single-node island per expert plus the router island
/// (Akka clusters on loopback, SQLite journals, one checkpoint store), then a serving node whose HTTP API the demo calls
/// as any client would. Everything lives under one working directory, so a rerun resumes.
/// </summary>
public sealed class LocalDemo(string work, int httpPortBase, Action<string> log) : IAsyncDisposable
{
    private readonly List<(string Island, string Job, WebApplication App)> islands = [];
    private WebApplication? serving;

    public string Work { get; } = Path.GetFullPath(work);
    public string Store => Path.Combine(Work, "islands");
    public string DataDirectory => Path.Combine(Work, "data");
    public string PartitionsFile => Path.Combine(Work, "partitions.json");
    public string ApiKeyFile => Path.Combine(Work, "api-key");
    public string? ApiUrl { get; private set; }
    public DemoPlan Plan { get; private set; } = null!;

    /// <summary>Data, partitions and the frozen plan: created on the first run, reused afterwards.</summary>
    public DemoPlan Prepare(double minutes, int k)
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
            // the router training side by side; the time budget below stops them anyway, and a rerun continues.
            var steps = Math.Max(20, (int)Math.Round(minutes * 45));
            Plan = new DemoPlan(DemoPlan.CurrentSchemaVersion, dataset.Manifest.Name, k, steps, Math.Max(100, steps * 2), 64, "bf16",
                Math.Max(10, steps / 10), DateTimeOffset.UtcNow);
            Json.WriteAtomic(planPath, Plan);
        }
        return Plan;
    }

    /// <summary>Starts one single-node island per expert and the router island (each resumes from its journal).</summary>
    public async Task StartIslandsAsync(CancellationToken cancel)
    {
        var config = Path.Combine(Work, "islands.conf");
        await File.WriteAllTextAsync(config, $$"""
            islands {
              store = "{{Store}}"
              training {
                data-directory = "{{DataDirectory}}"
                partitions-file = "{{PartitionsFile}}"
              }
            }
            """, cancel);
        var jobs = Enumerable.Range(0, Plan.K).Select(k => ($"expert-{k}", $"expert:{k}")).Append(("router", "router")).ToList();
        for (var i = 0; i < jobs.Count; i++)
        {
            var (island, job) = jobs[i];
            var training = job == "router"
                ? new Dictionary<string, string?> { ["islands.training.steps"] = Str(Plan.RouterSteps), ["islands.training.checkpoint-every"] = Str(Math.Max(50, Plan.RouterSteps / 4)), ["islands.training.expert-count"] = Str(Plan.K) }
                : new Dictionary<string, string?>
                {
                    ["islands.training.steps"] = Str(Plan.ExpertSteps), ["islands.training.checkpoint-every"] = Str(Plan.CheckpointEvery),
                    ["islands.training.batch-size"] = Str(Plan.BatchSize), ["islands.training.precision"] = Plan.Precision,
                    ["islands.training.warmup-steps"] = Str(Math.Min(100, Plan.ExpertSteps / 5)),
                };
            var options = new Dictionary<string, string?>(training)
            {
                ["islands.island"] = island,
                ["islands.job"] = job,
                ["islands.http.port"] = Str(httpPortBase == 0 ? 0 : httpPortBase + 1 + i),
                // The experts train side by side: each gets its share of the cores.
                ["islands.torch-threads"] = Str(Math.Max(1, Environment.ProcessorCount / Plan.K)),
            };
            var settings = IslandNodeConfig.Parse(IslandNodeConfig.Load(config, options, new Hashtable()));
            var app = IslandNode.Build(settings, l => l.SetMinimumLevel(LogLevel.Error));
            await app.StartAsync(cancel);
            islands.Add((island, job, app));
        }
    }

    private static string Str(int value) => value.ToString(CultureInfo.InvariantCulture);

    public async Task<IReadOnlyList<DemoIslandState>> IslandStatesAsync(CancellationToken cancel)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var states = new List<DemoIslandState>();
        foreach (var (island, job, app) in islands)
        {
            var url = IslandNode.HttpAddress(app) + "/status";
            try
            {
                var status = await http.GetFromJsonAsync<IslandStatus>(url, Json.Options, cancel);
                var j = status?.Job;
                states.Add(new DemoIslandState(island, job, j?.Phase ?? "starting", j?.Step ?? 0, j?.TotalSteps ?? 0, j?.Loss, j?.ImagesPerSecond ?? 0,
                    j?.LastCheckpoint?.Step, url));
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancel.IsCancellationRequested)
            {
                states.Add(new DemoIslandState(island, job, "stopped", 0, 0, null, 0, null, null));
            }
        }
        return states;
    }

    /// <summary>Stops the islands that have not finished: each commits and publishes its current step first.</summary>
    public async Task StopUnfinishedIslandsAsync(IReadOnlyList<DemoIslandState> states)
    {
        foreach (var state in states.Where(s => s.Phase != "completed"))
        {
            var (_, _, app) = islands.Single(i => i.Island == state.Island);
            log($"{state.Island}: time budget reached at step {state.Step}/{state.TotalSteps}; committing and stopping (a rerun continues)");
            await app.StopAsync();
        }
    }

    /// <summary>Starts a serving node on the store, with an API key kept in work/api-key (created on the first run).</summary>
    public async Task StartServingAsync(CancellationToken cancel)
    {
        ApiKeyAuthentication.EnsureKeyFile(ApiKeyFile);
        var options = new Dictionary<string, string?>
        {
            ["islands.serving.store"] = Store,
            ["islands.serving.results"] = Path.Combine(Work, "serving-results"),
            ["islands.serving.http.port"] = Str(httpPortBase),
            ["islands.serving.api-keys-file"] = ApiKeyFile,
            ["islands.serving.precision"] = "bf16",
        };
        var settings = ServingNodeConfig.Parse(ServingNodeConfig.Load(null, options, new Hashtable()));
        serving = ServingNode.Build(settings, l => l.SetMinimumLevel(LogLevel.Error));
        await serving.StartAsync(cancel);
        ApiUrl = IslandNode.HttpAddress(serving);
    }

    /// <summary>Asks the API for `perClass` images of every class, as a client would, and writes them as one grid (a row per class).</summary>
    public async Task<(int Images, IReadOnlyList<string> Classes, double Seconds)> GenerateAsync(string output, int perClass, int steps, CancellationToken cancel)
    {
        var key = (await File.ReadAllTextAsync(ApiKeyFile, cancel)).Trim();
        using var http = new HttpClient { BaseAddress = new Uri(ApiUrl!), Timeout = TimeSpan.FromMinutes(10) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        var classes = CanonicalDataset.Load(DataDirectory).Manifest.Classes;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        // One request per class, all at once: the router batches them into shared steps.
        var answers = await Task.WhenAll(classes.Select(async (_, c) =>
        {
            using var response = await http.PostAsJsonAsync("/v1/generations", new { count = perClass, @class = c, steps, seed = c, format = "json" }, cancel);
            var text = await response.Content.ReadAsStringAsync(cancel);
            if (!response.IsSuccessStatusCode) throw new IslandsException($"{ApiUrl}/v1/generations: {(int)response.StatusCode}: {text}");
            return JsonDocument.Parse(text).RootElement.Clone();
        }));
        var seconds = clock.Elapsed.TotalSeconds;
        var pixels = new List<byte>();
        var side = 0;
        foreach (var answer in answers)
            foreach (var image in answer.GetProperty("images").EnumerateArray())
            {
                var (grey, width, _) = ImageGrid.DecodeGrey(image.GetBytesFromBase64());
                pixels.AddRange(grey);
                side = width;
            }
        ImageGrid.SavePng(output, [.. pixels], classes.Count * perClass, 1, side, side, columns: perClass);
        return (classes.Count * perClass, classes, seconds);
    }

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
