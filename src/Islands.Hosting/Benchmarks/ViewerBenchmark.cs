using System.Collections;
using System.Net;
using System.Net.Http.Json;
using System.Security.Cryptography;
using Akka.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace Islands.Hosting.Benchmarks;

/// <param name="Messages">Event-stream messages the connected viewer received, over all its rounds.</param>
public sealed record ViewerBenchmarkResult(string Job, int Batch, int CheckpointEvery, IReadOnlyList<IslandThroughput> Throughput,
    double WithoutViewerImagesPerSecond, double WithViewerImagesPerSecond, double WithOverWithout, double PollSeconds, long Messages);

/// <summary>
/// `islands bench island --viewer`: what the live viewer costs training. Each round trains the same job in a one-node island
/// beside a serving node whose viewer watches it, once with a browser connected to the viewer's event stream (signed in
/// as a browser is, so the viewer polls the island and this node every interval) and once with none (so it polls nothing),
/// in ABBA order after a warm-up pair; images/s between the same two checkpoint commits, as `bench island` times them.
/// </summary>
public static class ViewerBenchmark
{
    public static ViewerBenchmarkResult Run(Func<long, string> nodeConfig, long steps, string work, int rounds, TimeSpan stableAfter,
        Action<string> log, CancellationToken cancel)
    {
        Directory.CreateDirectory(work);
        var configFile = Path.Combine(work, "bench.json");
        File.WriteAllText(configFile, nodeConfig(steps));
        var job = IslandBenchmark.Settings("probe", configFile, work, 0, null, "sqlite", null, stableAfter).Job;
        var throughput = new List<IslandThroughput>();
        long messages = 0;
        var poll = TimeSpan.Zero;
        for (var round = 0; round <= rounds && !cancel.IsCancellationRequested; round++)
        {
            var connectedFirst = round % 2 == 1;
            foreach (var connected in connectedFirst ? new[] { true, false } : [false, true])
            {
                var (result, received, interval) = Round(configFile, work, round, connected, stableAfter, cancel).GetAwaiter().GetResult();
                throughput.Add(result);
                if (round > 0) messages += received;
                poll = interval;
                log($"round {(round == 0 ? "0 (warm-up)" : round)}: {(connected ? $"viewer connected ({received} messages)" : "no viewer")} " +
                    $"{result.ImagesPerSecond:F1} img/s");
            }
        }
        var counted = throughput.Where(t => t.Round > 0).ToList();
        double Rate(string mode) => counted.Where(t => t.Mode == mode).Sum(t => t.Steps) * (double)job.BatchSize
            / counted.Where(t => t.Mode == mode).Sum(t => t.Seconds);
        var without = Rate("no viewer");
        var with = Rate("viewer connected");
        return new ViewerBenchmarkResult(job.Name, job.BatchSize, job.CheckpointEvery, throughput, without, with, with / without, poll.TotalSeconds,
            messages);
    }

    private static async Task<(IslandThroughput Result, long Messages, TimeSpan Interval)> Round(string configFile, string work, int round,
        bool connected, TimeSpan stableAfter, CancellationToken cancel)
    {
        var islandHttp = IslandBenchmark.FreePort();
        var settings = IslandBenchmark.Settings($"viewer-bench-{round}-{(connected ? "on" : "off")}", configFile, Path.Combine(work, "islands"), 0,
            null, "sqlite", null, stableAfter, islandHttp);
        var key = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        var servingOptions = new Dictionary<string, string?>
        {
            ["islands:serving:name"] = "viewer-bench",
            ["islands:serving:store"] = Path.Combine(work, "islands"),
            ["islands:serving:results"] = Path.Combine(work, "serving-results"),
            ["islands:serving:http:port"] = "0",
            ["islands:serving:apiKeys"] = key,
            ["islands:serving:viewer:islands"] = $"http://127.0.0.1:{islandHttp}",
        };
        var servingSettings = ServingNodeConfig.Parse(ServingNodeConfig.Load(null, servingOptions, new Hashtable()));
        await using var serving = ServingNode.Build(servingSettings, IslandBenchmark.Quiet);
        await serving.StartAsync(cancel);
        await using var island = IslandNode.Build(settings, IslandBenchmark.Quiet);
        await island.StartAsync(cancel);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        long messages = 0;
        var browser = connected ? Task.Run(() => WatchAsync(ServingNode.ViewerAddress(serving)!, key, () => Interlocked.Increment(ref messages),
            stop.Token), stop.Token) : Task.CompletedTask;
        var proxy = await island.Services.GetRequiredService<IRequiredActor<TrainingJobSingleton>>().GetAsync(cancel);
        while ((await IslandBenchmark.Ask(proxy))?.Phase != "completed") await Task.Delay(1000, cancel);
        await stop.CancelAsync();
        try { await browser; } catch (OperationCanceledException) { }
        if (connected && messages == 0)
            throw new Diffusion.IslandsException("the viewer sent the connected client nothing: the benchmark measured no viewer");
        await island.StopAsync(cancel);
        await serving.StopAsync(cancel);
        var result = IslandBenchmark.Between(new Diffusion.Checkpoints.CheckpointStore(settings.RunDirectory), settings.Job.BatchSize,
            connected ? "viewer connected" : "no viewer", round);
        return (result, messages, servingSettings.Viewer!.Interval);
    }

    /// <summary>What a browser does: signs in for a session cookie and reads the event stream until stopped.</summary>
    private static async Task WatchAsync(string viewer, string key, Action received, CancellationToken cancel)
    {
        using var handler = new HttpClientHandler { CookieContainer = new CookieContainer() };
        using var http = new HttpClient(handler) { BaseAddress = new Uri(viewer), Timeout = Timeout.InfiniteTimeSpan };
        (await http.PostAsJsonAsync("session", new { key }, cancel)).EnsureSuccessStatusCode();
        using var response = await http.GetAsync("events", HttpCompletionOption.ResponseHeadersRead, cancel);
        response.EnsureSuccessStatusCode();
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel));
        while (await reader.ReadLineAsync(cancel) is { } line)
            if (line.StartsWith("data:", StringComparison.Ordinal)) received();
    }
}
