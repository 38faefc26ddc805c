using System.Collections;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net.Http.Json;
using Islands.Actors.Serving;
using Islands.Diffusion;
using Islands.Diffusion.Modules;
using Islands.Diffusion.Routing;
using Islands.Diffusion.Sampling;
using Islands.Diffusion.Serving;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;

namespace Islands.Hosting.Benchmarks;

public sealed record OfflineSampling(int Images, int Steps, double Seconds, double ImagesPerSecond);

public sealed record ServedLoad(int Clients, int Requests, int Images, double Seconds, double ImagesPerSecond, double P50Seconds, double P99Seconds,
    double MeanBatchRows, int Failed, double OverOffline);

public sealed record ServeBenchmarkResult(string Store, int Nodes, string Strategy, int Steps, int ImagesPerRequest, int MaxBatchRows,
    IReadOnlyList<OfflineSampling> Offline, double OfflineImagesPerSecond, IReadOnlyList<ServedLoad> Served);

/// <summary>One phase of the slow-expert run. Untouched: the requests none of whose images visited the slowed expert.</summary>
public sealed record SlowExpertPhase(string Phase, double StragglerFactor, bool Slowed, int Requests, int Failed, double ImagesPerSecond,
    double P50Seconds, double P99Seconds, int UntouchedRequests, double UntouchedP50Seconds, double UntouchedP99Seconds);

/// <param name="UntouchedP99OverHealthy">The untouched requests' p99 with the expert slowed, over the healthy p99 (1 = unaffected).</param>
/// <param name="LockstepUntouchedP99OverHealthy">The same with straggler-factor 0, where every step waits for all its experts.</param>
public sealed record SlowExpertResult(string Store, int Nodes, string Strategy, int Steps, int ImagesPerRequest, int Clients, int SlowExpert,
    double SlowBySeconds, IReadOnlyList<SlowExpertPhase> Phases, double UntouchedP99OverHealthy, double LockstepUntouchedP99OverHealthy,
    double P99OverLockstep);

/// <summary>
/// `islands bench serve`: the published ensemble sampled offline in this process (one batched, routed sampling run of
/// max-rows images, before and after the served runs), then served by an in-process serving cluster to 1, 8, 32...
/// concurrent HTTP clients: throughput, p50/p99 latency and the mean continuous-batch size, each against offline.
/// </summary>
public static class ServeBenchmark
{
    /// <summary>
    /// `islands bench serve --slow-expert K`: the same closed-loop load on a healthy cluster, then with expert K's answers
    /// held back by slowBy (fault injection) with straggler-factor 0 (every step waits for all its experts) and with the
    /// configured default: throughput and p50/p99 latency, overall and for the requests that never visited expert K.
    /// </summary>
    public static async Task<SlowExpertResult> RunSlowExpertAsync(string store, int nodes, int clients, int imagesPerRequest, int steps,
        string strategy, int maxRows, TimeSpan duration, string precision, int slowExpert, TimeSpan slowBy, Action<string> log,
        CancellationToken cancel)
    {
        var scan = PublishedModels.Scan(store);
        if (scan.Router is null || scan.Experts.Count == 0)
            throw new ConfigException("--store", $"{store}: needs published experts and a router (found {scan.Experts.Count} experts, " +
                $"{(scan.Router is null ? "no" : "a")} router)");
        if (scan.Experts.All(e => e.Expert != slowExpert))
            throw new ConfigException("--slow-expert",
                $"{slowExpert} is not a published expert of {store} (published: {string.Join(", ", scan.Experts.Select(e => e.Expert).Order())})");
        var defaultFactor = ServingNodeConfig.Parse(ServingNodeConfig.Load(null, new Dictionary<string, string?> { ["islands:serving:store"] = store,
            ["islands:serving:allowAnonymous"] = "on" }, new Hashtable())).Serving.StragglerFactor;
        var phases = new List<SlowExpertPhase>();
        foreach (var (phase, factor, slowed) in new[] { ("healthy", defaultFactor, false), ("slowed, straggler-factor 0", 0.0, true),
            ("slowed, straggler-factor " + defaultFactor.ToString("0.##", CultureInfo.InvariantCulture), defaultFactor, true) })
        {
            var extra = new Dictionary<string, string?> { ["stragglerFactor"] = factor.ToString(CultureInfo.InvariantCulture) };
            if (slowed)
            {
                extra["faults:slowExpert"] = slowExpert.ToString(CultureInfo.InvariantCulture);
                extra["faults:slowExpertDelay"] = $"{(long)slowBy.TotalMilliseconds}ms";
            }
            await using var cluster = await BenchCluster.StartAsync(store, nodes, maxRows, precision, extra, cancel);
            await Load(cluster.Urls, 2, imagesPerRequest, steps, "full", TimeSpan.FromSeconds(3), cancel);
            var (requests, latencies, seconds, failed) = await Load(cluster.Urls, clients, imagesPerRequest, steps, strategy, duration,
                cancel, slowExpert);
            var all = latencies.Select(l => l.Seconds).Order().ToList();
            var untouched = latencies.Where(l => !l.Visited).Select(l => l.Seconds).Order().ToList();
            var result = new SlowExpertPhase(phase, factor, slowed, requests, failed, requests * imagesPerRequest / seconds, Percentile(all, 0.5),
                Percentile(all, 0.99), untouched.Count, Percentile(untouched, 0.5), Percentile(untouched, 0.99));
            phases.Add(result);
            log($"{phase}: {result.ImagesPerSecond:F1} images/s, p50 {result.P50Seconds:F2} s, p99 {result.P99Seconds:F2} s; " +
                $"{untouched.Count} requests never visited expert {slowExpert}: p50 {result.UntouchedP50Seconds:F2} s, p99 " +
                $"{result.UntouchedP99Seconds:F2} s");
        }
        return new SlowExpertResult(store, nodes, strategy, steps, imagesPerRequest, clients, slowExpert, slowBy.TotalSeconds, phases,
            phases[2].UntouchedP99Seconds / phases[0].UntouchedP99Seconds, phases[1].UntouchedP99Seconds / phases[0].UntouchedP99Seconds,
            phases[2].P99Seconds / phases[1].P99Seconds);
    }

    public static async Task<ServeBenchmarkResult> RunAsync(string store, int nodes, IReadOnlyList<int> clients, int imagesPerRequest, int steps,
        string strategy, int maxRows, TimeSpan duration, string precision, Action<string> log, CancellationToken cancel,
        double? stragglerFactor = null, string sampler = FlowStep.Euler)
    {
        var scan = PublishedModels.Scan(store);
        if (scan.Router is null || scan.Experts.Count == 0)
            throw new ConfigException("--store", $"{store}: needs published experts and a router (found {scan.Experts.Count} experts, " +
                $"{(scan.Router is null ? "no" : "a")} router)");
        var offline = new List<OfflineSampling> { Offline(scan, maxRows, steps, strategy, precision, sampler) };
        log($"offline: {offline[0].ImagesPerSecond:F1} images/s ({offline[0].Images} images, {steps} steps, {strategy})");

        var batchRows = new List<long>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == ServingTelemetry.Name && instrument.Name == "islands.serving.batch.rows")
                    l.EnableMeasurementEvents(instrument);
            },
        };
        listener.SetMeasurementEventCallback<int>((_, value, _, _) => { lock (batchRows) batchRows.Add(value); });
        listener.Start();
        var extra = new Dictionary<string, string?> { ["stragglerFactor"] = stragglerFactor?.ToString(CultureInfo.InvariantCulture) };
        await using var cluster = await BenchCluster.StartAsync(store, nodes, maxRows, precision, extra, cancel);
        var urls = cluster.Urls;
        // Warm-up: loads the router and every expert that top-1 routing reaches, JIT-compiles the paths.
        await Load(urls, 2, imagesPerRequest, steps, "full", TimeSpan.FromSeconds(3), cancel);
        var served = new List<ServedLoad>();
        foreach (var c in clients)
        {
            lock (batchRows) batchRows.Clear();
            var (requests, latencies, seconds, failed) = await Load(urls, c, imagesPerRequest, steps, strategy, duration, cancel, sampler: sampler);
            double meanBatch;
            lock (batchRows) meanBatch = batchRows.Count == 0 ? 0 : batchRows.Average();
            var images = requests * imagesPerRequest;
            var sorted = latencies.Select(l => l.Seconds).Order().ToList();
            var load = new ServedLoad(c, requests, images, seconds, images / seconds, Percentile(sorted, 0.5), Percentile(sorted, 0.99),
                meanBatch, failed, 0);
            served.Add(load);
            log($"{c} clients: {load.ImagesPerSecond:F1} images/s, p50 {load.P50Seconds:F2} s, p99 {load.P99Seconds:F2} s, mean batch " +
                $"{meanBatch:F1}");
        }
        offline.Add(Offline(scan, maxRows, steps, strategy, precision, sampler));
        log($"offline again: {offline[1].ImagesPerSecond:F1} images/s");
        var offlineRate = offline.Average(o => o.ImagesPerSecond);
        return new ServeBenchmarkResult(store, nodes, strategy, steps, imagesPerRequest, maxRows, offline, offlineRate,
            served.Select(s => s with { OverOffline = s.ImagesPerSecond / offlineRate }).ToList());
    }

    /// <summary>In-process serving nodes on loopback over the store, as `islands serve` builds them.</summary>
    private sealed class BenchCluster(string work) : IAsyncDisposable
    {
        private readonly List<WebApplication> apps = [];

        public string[] Urls => apps.Select(IslandNode.HttpAddress).ToArray();

        public static async Task<BenchCluster> StartAsync(string store, int nodes, int maxRows, string precision,
            IReadOnlyDictionary<string, string?> extra, CancellationToken cancel)
        {
            var work = Path.Combine(Path.GetTempPath(), $"islands-bench-serve-{Guid.NewGuid():N}");
            Directory.CreateDirectory(work);
            var name = "bench" + Guid.NewGuid().ToString("N")[..6];
            var ports = Enumerable.Range(0, nodes).Select(_ => IslandBenchmark.FreePort()).ToArray();
            var configFile = Path.Combine(work, "serving.json");
            var serving = new Dictionary<string, object?>
            {
                ["name"] = name, ["allowAnonymous"] = true, ["results"] = Path.Combine(work, "results"), ["precision"] = precision,
                ["http"] = new { port = 0, maxInFlight = 1024 }, ["batching"] = new { maxRows, maxWait = "5ms" },
                ["seedNodes"] = ports.Take(Math.Min(2, nodes)).Select(p => $"akka.tcp://serving-{name}@127.0.0.1:{p}").ToArray(),
            };
            await File.WriteAllTextAsync(configFile, System.Text.Json.JsonSerializer.Serialize(new { islands = new { serving } }), cancel);
            var cluster = new BenchCluster(work);
            try
            {
                foreach (var port in ports)
                {
                    var options = new Dictionary<string, string?>
                    {
                        ["islands:serving:store"] = store,
                        ["islands:serving:port"] = port.ToString(CultureInfo.InvariantCulture),
                    };
                    foreach (var (key, value) in extra) options["islands:serving:" + key] = value;
                    var settings = ServingNodeConfig.Parse(ServingNodeConfig.Load(configFile, options, new Hashtable()));
                    var app = ServingNode.Build(settings, l => l.SetMinimumLevel(LogLevel.Error));
                    cluster.apps.Add(app);
                    await app.StartAsync(cancel);
                }
                return cluster;
            }
            catch
            {
                await cluster.DisposeAsync();
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var app in apps) await app.DisposeAsync();
            try
            {
                Directory.Delete(work, recursive: true);
            }
            catch (IOException) { }
        }
    }

    /// <summary>Closed-loop load; with watchExpert ≥ 0 the answers come as JSON and say whether an image visited that expert.</summary>
    private static async Task<(int Requests, List<(double Seconds, bool Visited)> Latencies, double Seconds, int Failed)> Load(string[] urls,
        int clients, int count, int steps, string strategy, TimeSpan duration, CancellationToken cancel, int watchExpert = -1,
        string sampler = FlowStep.Euler)
    {
        var latencies = new List<(double Seconds, bool Visited)>();
        var failed = 0;
        var clock = Stopwatch.StartNew();
        var end = duration;
        await Task.WhenAll(Enumerable.Range(0, clients).Select(c => Task.Run(async () =>
        {
            // No retries: a benchmark counts a failed request instead of hiding it in another attempt's latency.
            using var client = GenerationClient.Create(urls[c % urls.Length], null, TimeSpan.FromMinutes(5), retries: 0);
            var seed = c * 100_000L;
            while (clock.Elapsed < end && !cancel.IsCancellationRequested)
            {
                var started = clock.Elapsed.TotalSeconds;
                var request = new { count, steps, strategy, sampler, seed, format = watchExpert >= 0 ? "json" : "png" };
                var (status, _, body) = await client.GenerateAsync(request, $"bench-{c}-{seed++}-{Guid.NewGuid():N}", cancel);
                var seconds = clock.Elapsed.TotalSeconds - started;
                var ok = (int)status is >= 200 and <= 299;
                var visited = watchExpert >= 0 && ok &&
                    System.Text.Json.JsonDocument.Parse(body).RootElement.GetProperty("imageStepsByExpert")[watchExpert].GetInt64() > 0;
                lock (latencies)
                {
                    if (ok) latencies.Add((seconds, visited));
                    else failed++;
                }
            }
        }, cancel)));
        return (latencies.Count, latencies, clock.Elapsed.TotalSeconds, failed);
    }

    /// <summary>The same ensemble and strategy, sampled in one routed batch of max-rows images in this process.</summary>
    private static OfflineSampling Offline(PublishedModelScan scan, int images, int steps, string strategy, string precision, string sampler)
    {
        var experts = scan.Experts.Select(e => ServedModels.LoadExpert(e, precision)).ToList();
        var shape = ServedModels.ImageShape(scan.Experts[0]);
        var (router, _) = ServedModels.LoadRouter(scan.Router!, shape.C * shape.H * shape.W);
        try
        {
            var models = Enumerable.Range(0, router.ExpertCount).Select(k => experts.FirstOrDefault(e => e.Published.Expert == k)?.Model).ToList();
            var available = models.Select(m => m is not null).ToArray();
            var standIn = models.First(m => m is not null)!;
            var ensemble = new ExpertEnsemble(models.Select(m => m ?? standIn).ToList(), router, RoutingStrategy.Parse(strategy), available);
            var clock = Stopwatch.StartNew();
            using var samples = FlowSampler.Sample(ensemble.Field(1), images, null,
                new SamplerOptions(Steps: steps, Method: sampler, Seed: 1, BatchSize: images), shape);
            var seconds = clock.Elapsed.TotalSeconds;
            return new OfflineSampling(images, steps, seconds, images / seconds);
        }
        finally
        {
            router.Dispose();
            foreach (var e in experts) e.Dispose();
        }
    }

    private static double Percentile(List<double> sorted, double q) =>
        sorted.Count == 0 ? double.NaN : sorted[Math.Min(sorted.Count - 1, (int)Math.Ceiling(q * sorted.Count) - 1)];
}
