using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using Akka.Actor;
using Akka.Hosting;
using Islands.Actors;
using Islands.Actors.Serving;
using Islands.Diffusion.Imaging;
using Islands.Diffusion.IO;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Islands.Hosting.Viewer;

/// <summary>
/// Keeps the viewer's panels current while a browser is connected (and asks nobody anything while none is): every
/// interval it reads each island's /status and /status/history, this node's registry and its distillation jobs, and
/// publishes what changed. A new set of served checkpoints gets new sample grids (each expert alone, and the ensemble,
/// one image per class), drawn through this node's own router as any generation is, at most once per gallery interval.
/// </summary>
public sealed class ViewerFeed(ViewerHub hub, ViewerImages images, ServingNodeSettings settings, IHttpClientFactory clients, ActorSystem system,
    IRequiredActor<ModelRegistryKey> registry, IRequiredActor<EnsembleRouterActor> routers, IRequiredActor<DistillationsKey> distillations,
    ServedClasses servedClasses, ILogger<ViewerFeed> log) : BackgroundService
{
    public const string ClientName = "islands-viewer";
    /// <summary>Distillation jobs shown: the most recently active.</summary>
    public const int ShownDistillations = 4;
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(5);
    /// <summary>The loss curve and checkpoint timeline are asked for at most this often (the status, every interval): they change slowly
    /// and are the larger answer.</summary>
    public static readonly TimeSpan HistoryInterval = TimeSpan.FromSeconds(5);

    private readonly ViewerSettings viewer = settings.Viewer!;
    private readonly Dictionary<Uri, string> islandOf = [];
    private readonly Dictionary<Uri, ViewerPanels.IslandAnswer> lastGood = [];
    private readonly Dictionary<string, (string Label, string Url)> grids = [];
    private readonly HashSet<string> shownDistillations = [];
    private PublishedModelsSnapshot? snapshot;
    private string? gallerySignature;
    private DateTimeOffset galleryAt = DateTimeOffset.MinValue;
    private Task gallery = Task.CompletedTask;

    protected override async Task ExecuteAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            await hub.WaitForSubscriberAsync(stop);
            try
            {
                await Task.WhenAll(IslandsAsync(stop), EnsembleAsync(stop), DistillationsAsync(stop));
            }
            catch (Exception e) when (e is not OperationCanceledException || !stop.IsCancellationRequested)
            {
                log.LogWarning("viewer: a round of updates failed: {Error}", e.Message);
            }
            await Task.Delay(viewer.Interval, stop);
        }
    }

    private async Task IslandsAsync(CancellationToken cancel)
    {
        var http = clients.CreateClient(ClientName);
        JobHistory? Recent(Uri endpoint) => lastGood.GetValueOrDefault(endpoint) is { LastHeardHistory: { } at } good
            && DateTimeOffset.UtcNow - at < HistoryInterval ? good.History : null;
        var answers = await Task.WhenAll(viewer.Islands.Select(endpoint => AskIslandAsync(http, endpoint, Recent(endpoint), cancel)));
        foreach (var answer in answers.Where(a => a.Status is not null))
        {
            islandOf[answer.Endpoint] = answer.Status!.Island;
            var previous = lastGood.GetValueOrDefault(answer.Endpoint);
            lastGood[answer.Endpoint] = answer with
            {
                LastStatus = answer.Status, LastHistory = answer.History, LastHeard = DateTimeOffset.UtcNow,
                LastHeardHistory = answer.LastHeardHistory ?? previous?.LastHeardHistory,
            };
        }
        answers = [.. answers.Select(a => a.Status is null && lastGood.TryGetValue(a.Endpoint, out var good)
            ? a with { LastStatus = good.LastStatus, LastHistory = good.LastHistory, LastHeard = good.LastHeard } : a)];
        var served = snapshot?.Experts.Append(snapshot.Router).OfType<Diffusion.Serving.PublishedModel>().ToDictionary(m => m.Island, m => m.Step)
            ?? [];
        foreach (var island in answers.Where(a => islandOf.ContainsKey(a.Endpoint)).GroupBy(a => islandOf[a.Endpoint]))
            hub.Publish(ViewerPanels.Island(island.Key, [.. island], served.TryGetValue(island.Key, out var step) ? step : null));
        // An endpoint that has never answered belongs to no known island (compose's small profile lists the HA profile's nodes too).
        var neverAnswered = answers.Where(a => !islandOf.ContainsKey(a.Endpoint)).ToList();
        if (neverAnswered.Count > 0) hub.Publish(ViewerPanels.UnknownEndpoints(neverAnswered));
        else hub.Remove(ViewerPanels.UnknownEndpointsId);
    }

    /// <param name="recentHistory">The history fetched less than <see cref="HistoryInterval"/> ago (null: fetch it now).</param>
    private static async Task<ViewerPanels.IslandAnswer> AskIslandAsync(HttpClient http, Uri endpoint, JobHistory? recentHistory,
        CancellationToken cancel)
    {
        try
        {
            var status = http.GetFromJsonAsync<IslandStatus>(new Uri(endpoint, "/status"), Json.Options, cancel);
            if (recentHistory is not null) return new ViewerPanels.IslandAnswer(endpoint, await status, recentHistory, null);
            var history = http.GetAsync(new Uri(endpoint, "/status/history"), cancel);
            var answer = await status;
            using var response = await history;
            // A job that is moving or recovering answers 503 here: the status still shows, without its curve.
            var jobHistory = response.IsSuccessStatusCode ? await response.Content.ReadFromJsonAsync<JobHistory>(Json.Options, cancel) : null;
            return new ViewerPanels.IslandAnswer(endpoint, answer, jobHistory, null)
            {
                LastHeardHistory = jobHistory is null ? null : DateTimeOffset.UtcNow,
            };
        }
        catch (Exception e) when (e is HttpRequestException or System.Text.Json.JsonException
            or TaskCanceledException && !cancel.IsCancellationRequested)
        {
            return new ViewerPanels.IslandAnswer(endpoint, null, null, e is TaskCanceledException ? "no answer in time" : e.Message);
        }
    }

    private async Task EnsembleAsync(CancellationToken cancel)
    {
        var models = await (await registry.GetAsync(cancel)).Ask<PublishedModelsSnapshot>(GetPublishedModels.Instance, AskTimeout, cancel);
        snapshot = models;
        IReadOnlyList<string> classes = [];
        if (models.Experts.Count > 0)
        {
            try
            {
                classes = servedClasses.For(models).Names;
            }
            catch (Diffusion.IslandsException e)
            {
                log.LogWarning("viewer: the served experts' classes cannot be read: {Error}", e.Message);
            }
        }
        lock (grids) hub.Publish(ViewerPanels.Ensemble(models, classes, new Dictionary<string, (string Label, string Url)>(grids)));
        var signature = models.Router is null || models.Experts.Count == 0 ? null
            : string.Join(";", models.Experts.Append(models.Router).Select(m => $"{m.Job}@{m.ManifestSha256}"));
        if (signature is null || signature == gallerySignature || !gallery.IsCompleted || DateTimeOffset.UtcNow - galleryAt < viewer.GalleryInterval)
            return;
        gallerySignature = signature;
        galleryAt = DateTimeOffset.UtcNow;
        gallery = Task.Run(() => GalleryAsync(models, classes, signature, cancel), cancel);
    }

    /// <summary>The grids of one set of served checkpoints: the ensemble's, then each expert's alone (oracle routing), one image per class.</summary>
    private async Task GalleryAsync(PublishedModelsSnapshot models, IReadOnlyList<string> classes, string signature, CancellationToken cancel)
    {
        var perClass = Math.Clamp(classes.Count, 1, 10);
        long[]? rowClasses = classes.Count > 0 ? [.. Enumerable.Range(0, perClass).Select(c => (long)c)] : null;
        var version = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(signature)))[..16];
        var wanted = new[] { ("ensemble", "Ensemble (a column per class)", "top1") }.Concat(models.Experts.Select(e => ($"expert-{e.Expert}",
            $"Expert {e.Expert} alone ({e.Island}, step {e.Step})", $"oracle:{e.Expert}")));
        foreach (var (key, label, strategy) in wanted)
        {
            var request = new GenerationRequest(perClass, rowClasses, 10, 1, strategy, 0);
            var png = await SampleGridAsync($"viewer-{version}-{strategy.Replace(':', '-')}", request, cancel);
            if (png is null) continue;
            lock (grids) grids[key] = (label, images.Put(png));
        }
    }

    private async Task<byte[]?> SampleGridAsync(string id, GenerationRequest request, CancellationToken cancel)
    {
        var channel = Channel.CreateUnbounded<IIslandsMessage>();
        var generate = new Generate(id, ServingSettings.DefaultEnsemble, request, id, null);
        var watcher = system.ActorOf(GenerationWatcher.Props(await routers.GetAsync(cancel), generate, channel.Writer, settings.Serving));
        try
        {
            await foreach (var message in channel.Reader.ReadAllAsync(cancel))
                switch (message)
                {
                    case GenerationCompleted done:
                        return ImageGrid.EncodePng(done.Payload, done.Request.Count, done.Channels, done.Height, done.Width,
                            columns: done.Request.Count);
                    case GenerationFailed failed:
                        log.LogWarning("viewer: sample grid {Id} failed: {Reason}", id, failed.Reason);
                        return null;
                }
            return null;
        }
        finally
        {
            system.Stop(watcher);
        }
    }

    private async Task DistillationsAsync(CancellationToken cancel)
    {
        var root = DistillationApi.Root(settings);
        var recent = Directory.Exists(root)
            ? new DirectoryInfo(root).GetDirectories("d*").OrderByDescending(d => d.LastWriteTimeUtc).Take(ShownDistillations)
                .Select(d => d.Name).ToList()
            : [];
        var jobs = await distillations.GetAsync(cancel);
        foreach (var id in recent)
        {
            var status = await jobs.Ask<DistillationStatus>(new GetDistillation(id), AskTimeout, cancel);
            if (status.Phase == "unknown") continue;
            hub.Publish(ViewerPanels.Distillation(status, status.Preview is { } png ? images.Put(png) : null));
        }
        foreach (var gone in shownDistillations.Except(recent).ToList()) hub.Remove("distillation:" + gone);
        shownDistillations.Clear();
        shownDistillations.UnionWith(recent);
    }
}
