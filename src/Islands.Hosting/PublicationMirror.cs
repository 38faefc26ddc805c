using System.Collections.Concurrent;
using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using Akka.Actor;
using Akka.Hosting;
using Islands.Actors.Serving;
using Islands.Diffusion;
using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.IO;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Islands.Hosting;

/// <summary>What a serving node knows of one island endpoint it fetches from (shown by GET /v1/experts).</summary>
/// <param name="State">up-to-date, fetched, nothing-published or failed.</param>
/// <param name="BytesFetched">Bytes received from this endpoint since the node started.</param>
/// <param name="BytesResumed">Bytes of interrupted transfers that were kept and not fetched again.</param>
public sealed record PublicationSourceStatus(string Endpoint, string? Island, long? Step, string State, string? Error,
    long BytesFetched, long BytesResumed, DateTimeOffset CheckedUtc);

/// <summary>
/// On a serving node whose islands share no filesystem with it: every interval, asks each island endpoint for its
/// publication and, when it is newer than the one in this node's store, fetches the checkpoint's files into
/// <c>&lt;store&gt;/&lt;island&gt;/.incoming</c> (an interrupted file is resumed with a range request, from this endpoint or
/// another node of the same island), checks each against the publication's SHA-256, and installs the checkpoint only
/// when every file verifies: the directory is renamed into place, then published.json is written. The registry reads the
/// store as if the island had written it. A file that does not verify is discarded and fetched again; nothing that did
/// not verify is ever served.
/// </summary>
public sealed partial class PublicationMirror(ServingNodeSettings settings, IHttpClientFactory clients, IRequiredActor<ModelRegistryKey> registry,
    ILogger<PublicationMirror> log) : BackgroundService
{
    public const string ClientName = "publication-sources";
    public const string IncomingDirectory = ".incoming";
    private const int MaxPublicationBytes = 1 << 20;
    private static readonly TimeSpan StallTimeout = TimeSpan.FromSeconds(30);

    private readonly PublicationSources sources = settings.Sources;
    private readonly string store = settings.Serving.Store;
    private readonly ConcurrentDictionary<Uri, PublicationSourceStatus> status = new();
    // Several endpoints (nodes) of one island offer the same files: one at a time writes that island's cache.
    private readonly ConcurrentDictionary<string, SemaphoreSlim> islandLocks = new();

    public IReadOnlyList<PublicationSourceStatus> Status =>
        [.. sources.Endpoints.Select(e => status.TryGetValue(e, out var s) ? s
            : new PublicationSourceStatus(e.ToString(), null, null, "not-checked", null, 0, 0, default))];

    protected override async Task ExecuteAsync(CancellationToken stop)
    {
        Directory.CreateDirectory(store);
        using var timer = new PeriodicTimer(sources.Interval);
        try
        {
            do
            {
                // All endpoints at once, so that one that is down or slow delays nobody else.
                await Task.WhenAll(sources.Endpoints.Select(e => MirrorAsync(e, stop)));
            }
            while (await timer.WaitForNextTickAsync(stop));
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    /// <summary>One round for one endpoint; failures are recorded and logged, never thrown (the next round tries again).</summary>
    public async Task MirrorAsync(Uri endpoint, CancellationToken cancel)
    {
        var previous = status.GetValueOrDefault(endpoint);
        var counters = (Fetched: previous?.BytesFetched ?? 0, Resumed: previous?.BytesResumed ?? 0);
        PublishedCheckpoint? published = null;
        try
        {
            var http = clients.CreateClient(ClientName);
            var (bytes, offered) = await FetchPublicationAsync(http, endpoint, cancel);
            published = offered;
            if (published is null)
            {
                Record(endpoint, null, "nothing-published", null, counters);
                return;
            }
            var runDirectory = Path.Combine(store, published.Island);
            var gate = islandLocks.GetOrAdd(published.Island, _ => new SemaphoreSlim(1, 1));
            await gate.WaitAsync(cancel);
            try
            {
                var current = ReadCurrent(runDirectory);
                if (current is not null && (current.ManifestSha256 == published.ManifestSha256 || current.PublishedUtc > published.PublishedUtc))
                {
                    // The same publication, or one older than what another node of this island already gave us.
                    Record(endpoint, published, "up-to-date", null, counters);
                    return;
                }
                var installed = await InstallAsync(http, endpoint, published, bytes, runDirectory, current, counters, cancel);
                counters = installed;
                Record(endpoint, published, "fetched", null, counters);
                log.LogInformation("fetched {Island}'s {Job} at step {Step} from {Endpoint} ({Bytes} bytes, {Resumed} resumed); every file verifies",
                    published.Island, published.Job, published.Step, endpoint, counters.Fetched - (previous?.BytesFetched ?? 0),
                    counters.Resumed - (previous?.BytesResumed ?? 0));
                (await registry.GetAsync(cancel)).Tell(new ModelPublished(published.Island, published.Job, published.Step));
            }
            finally
            {
                gate.Release();
            }
        }
        // ExecutionRejectedException: the resilience handler's timeout or an open circuit of this endpoint.
        catch (Exception e) when (
            e is HttpRequestException or IOException or IslandsException or UnauthorizedAccessException or Polly.ExecutionRejectedException
                                      || e is OperationCanceledException && !cancel.IsCancellationRequested)
        {
            // The mirror's own errors name the URL already; transport errors get the endpoint.
            var message = e switch
            {
                OperationCanceledException => $"{endpoint}: timed out",
                IslandsException => e.Message,
                _ => $"{endpoint}: {e.Message}",
            };
            Record(endpoint, published, "failed", message, status.GetValueOrDefault(endpoint) is { } s ? (s.BytesFetched, s.BytesResumed) : counters);
            log.LogWarning("publication from {Endpoint}: {Problem}", endpoint, message);
        }
    }

    private async Task<(byte[] Bytes, PublishedCheckpoint? Published)> FetchPublicationAsync(HttpClient http, Uri endpoint, CancellationToken cancel)
    {
        var url = new Uri(endpoint, PublicationEndpoints.Path.TrimStart('/'));
        using var request = Request(url, offset: 0);
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel);
        if (response.StatusCode == HttpStatusCode.NotFound) return ([], null);
        await ThrowUnlessSuccess(url, response, cancel);
        if (response.Content.Headers.ContentLength > MaxPublicationBytes)
            throw new IslandsException($"{url}: a publication of {response.Content.Headers.ContentLength} bytes is not plausible");
        var bytes = await response.Content.ReadAsByteArrayAsync(cancel);
        PublishedCheckpoint published;
        try
        {
            published = JsonSerializer.Deserialize<PublishedCheckpoint>(bytes, Json.Options)
                ?? throw new IslandsException($"{url}: empty publication");
        }
        catch (JsonException e)
        {
            throw new IslandsException($"{url}: not a publication ({e.Message})");
        }
        Validate(url, published);
        return (bytes, published);
    }

    /// <summary>Refuses a publication that could make this node write outside its store or that it could not verify.</summary>
    private static void Validate(Uri url, PublishedCheckpoint published)
    {
        if (published.SchemaVersion != PublishedCheckpoint.CurrentSchemaVersion)
            throw new IslandsException($"{url}: schemaVersion {published.SchemaVersion} is not supported (expected " +
                $"{PublishedCheckpoint.CurrentSchemaVersion})");
        if (published.Island is null || !IslandName().IsMatch(published.Island))
            throw new IslandsException($"{url}: island '{published.Island}' is not an island name");
        if (CheckpointName(published) is null) throw new IslandsException($"{url}: checkpoint '{published.Checkpoint}' is not checkpoints/step-N");
        if (published.ManifestSha256 is null || !Sha256().IsMatch(published.ManifestSha256))
            throw new IslandsException($"{url}: manifestSha256 is not a SHA-256");
        if (published.ConfigSha256 is null || !Sha256().IsMatch(published.ConfigSha256))
            throw new IslandsException($"{url}: the publication has no configSha256 (the island runs an older version); serving from afar needs it");
        if (published.Files is null || published.Files.Count == 0) throw new IslandsException($"{url}: the publication names no files");
        foreach (var (file, sha) in published.Files)
        {
            if (!FileName().IsMatch(file) || file == CheckpointManifest.FileName)
                throw new IslandsException($"{url}: file name '{file}' is not allowed");
            if (sha is null || !Sha256().IsMatch(sha)) throw new IslandsException($"{url}: the SHA-256 of {file} is not one");
        }
    }

    private static string? CheckpointName(PublishedCheckpoint published) =>
        published.Checkpoint is { } path && path.StartsWith("checkpoints/", StringComparison.Ordinal)
        && path["checkpoints/".Length..] is var name && CheckpointStore.Parse(name) is not null ? name : null;

    private static PublishedCheckpoint? ReadCurrent(string runDirectory)
    {
        var path = Path.Combine(runDirectory, PublishedCheckpoint.FileName);
        try { return File.Exists(path) ? Json.Read<PublishedCheckpoint>(path) : null; }
        catch (IslandsException) { return null; }
    }

    private async Task<(long Fetched, long Resumed)> InstallAsync(HttpClient http, Uri endpoint, PublishedCheckpoint published, byte[] publication,
        string runDirectory, PublishedCheckpoint? current, (long Fetched, long Resumed) counters, CancellationToken cancel)
    {
        var name = CheckpointName(published)!;
        var incomingRoot = Path.Combine(runDirectory, IncomingDirectory);
        // Named by the manifest's hash, so a transfer resumes only into files of the same checkpoint.
        var incoming = Path.Combine(incomingRoot, $"{name}-{published.ManifestSha256[..16]}");
        Directory.CreateDirectory(incoming);
        var files = published.Files.Append(new KeyValuePair<string, string>(CheckpointManifest.FileName, published.ManifestSha256));
        foreach (var (file, sha) in files)
        {
            var (fetched, resumed) = await FetchFileAsync(http, endpoint, name, file, sha, incoming, cancel);
            counters = (counters.Fetched + fetched, counters.Resumed + resumed);
            Record(endpoint, published, "fetching", null, counters);
        }
        CheckpointException? invalid = null;
        try
        {
            var manifest = CheckpointStore.VerifyReference(incoming, published.ManifestSha256);
            if (!manifest.Files.OrderBy(f => f.Key, StringComparer.Ordinal)
                .SequenceEqual(published.Files.OrderBy(f => f.Key, StringComparer.Ordinal)))
                throw new CheckpointException(incoming, "the files the publication names differ from its checkpoint's manifest");
            PublishedCheckpoint.ThrowIfNonFinite(published.Job, incoming);
        }
        catch (CheckpointException e)
        {
            invalid = e;
        }
        if (invalid is not null)
        {
            Directory.Delete(incoming, recursive: true);
            throw new IslandsException($"{endpoint}: {published.Island}'s step {published.Step} refused: {invalid.Message}");
        }

        await FetchConfigAsync(http, endpoint, published.ConfigSha256!, runDirectory, cancel);
        var target = Path.Combine(runDirectory, "checkpoints", name);
        if (Directory.Exists(target))
        {
            // Only a cache: a copy that no longer verifies is replaced by the one that just did.
            try
            {
                CheckpointStore.VerifyReference(target, published.ManifestSha256);
                Directory.Delete(incoming, recursive: true);
            }
            catch (CheckpointException)
            {
                Directory.Delete(target, recursive: true);
            }
        }
        if (!Directory.Exists(target))
        {
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            Directory.Move(incoming, target);
        }
        AtomicFile.WriteAllBytes(Path.Combine(runDirectory, PublishedCheckpoint.FileName), publication);
        Prune(runDirectory, keep: [name, current is null ? null : CheckpointName(current)], incomingRoot);
        return counters;
    }

    /// <summary>Keeps the checkpoint just installed and the one it replaced (a sampler may still be loading it); the rest goes.</summary>
    private static void Prune(string runDirectory, string?[] keep, string incomingRoot)
    {
        var checkpoints = Path.Combine(runDirectory, "checkpoints");
        foreach (var directory in Directory.GetDirectories(checkpoints).Where(d => !keep.Contains(Path.GetFileName(d))))
            Directory.Delete(directory, recursive: true);
        if (!Directory.Exists(incomingRoot)) return;
        foreach (var stale in Directory.GetDirectories(incomingRoot)) Directory.Delete(stale, recursive: true);
    }

    private void Record(Uri endpoint, PublishedCheckpoint? published, string state, string? error, (long Fetched, long Resumed) counters) =>
        status[endpoint] = new PublicationSourceStatus(endpoint.ToString(), published?.Island, published?.Step, state, error, counters.Fetched,
            counters.Resumed,
            DateTimeOffset.UtcNow);

    [GeneratedRegex("^[a-z0-9][a-z0-9-]{0,39}$")]
    private static partial Regex IslandName();

    [GeneratedRegex("^[0-9a-f]{64}$")]
    private static partial Regex Sha256();

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    private static partial Regex FileName();
}
