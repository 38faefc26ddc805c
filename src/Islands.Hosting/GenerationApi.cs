using System.Diagnostics;
using System.Text.Json;
using System.Threading.Channels;
using Akka.Actor;
using Akka.Hosting;
using Islands.Actors;
using Islands.Actors.Serving;
using Islands.Diffusion.Imaging;
using Islands.Diffusion.Serving;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Islands.Hosting;

/// <summary>
/// The serving HTTP API: POST /v1/generations (synchronous, asynchronous with GET /v1/generations/{id}, or as
/// server-sent progress events), GET /v1/experts. It validates and translates; the actors do the work.
/// </summary>
public static class GenerationApi
{
    private const int MaxIdempotencyKeyLength = 200;

    /// <summary>How long an asynchronous request waits for the router's first answer (accepted, or refused) before its 202.</summary>
    private static readonly TimeSpan FirstAnswer = TimeSpan.FromSeconds(10);

    public static void Map(WebApplication app, ServingNodeSettings settings)
    {
        var v1 = app.MapGroup("/v1");
        v1.MapPost("/generations", Post)
            .Accepts<GenerationBody>("application/json")
            .Produces(StatusCodes.Status200OK, contentType: "image/png")
            .Produces<GenerationResult>(StatusCodes.Status200OK, "application/json")
            .Produces<GenerationStatus>(StatusCodes.Status202Accepted)
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status401Unauthorized).ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity).ProducesProblem(StatusCodes.Status429TooManyRequests)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable).ProducesProblem(StatusCodes.Status504GatewayTimeout)
            .WithSummary("Generate images with the ensemble of published experts")
            .WithDescription("Header Idempotency-Key makes a retry return the same result. Accept: text/event-stream streams progress events.");
        v1.MapGet("/generations/{id}", Get)
            .Produces<GenerationResult>().Produces<GenerationStatus>().ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Status or result of a generation (format=json or png)");
        v1.MapGet("/experts", Experts).Produces<ExpertsResponse>().WithSummary("Published experts, their checkpoints and availability");
    }

    public sealed record GenerationStatus(string Id, string Status, int Step, int Steps, string Location);

    public sealed record GenerationTimings(double QueueSeconds, double ComputeSeconds, double TotalSeconds);

    /// <param name="NonFiniteImages">Images whose sampled values held a NaN or an infinity: their pixels say nothing (0 when all are finite).</param>
    public sealed record GenerationResult(string Id, int Count, long? Class, int Steps, double Cfg, string Strategy, string Sampler, long Seed, string[] Images,
        int[][] Routing, long[] ImageStepsByExpert, int[] LeftOutExperts, bool Degraded, int Retries, int RetriedImageSteps, GenerationTimings Timings,
        IReadOnlyList<ServedCheckpoint> Checkpoints, int NonFiniteImages);

    public sealed record ExpertEntry(int Expert, bool Available, string? Island, long? Step, string? Checkpoint, string? ManifestSha256, DateTimeOffset? PublishedUtc);

    /// <param name="Sources">The island endpoints this node fetches publications from (empty when it reads the islands' store).</param>
    public sealed record ExpertsResponse(string Store, IReadOnlyList<ExpertEntry> Experts, ExpertEntry? Router, IReadOnlyList<string> Refused, DateTimeOffset ScannedUtc,
        IReadOnlyList<PublicationSourceStatus> Sources);

    private static async Task<IResult> Post(HttpContext http, ActorSystem system, IRequiredActor<EnsembleRouterActor> routers, IRequiredActor<ModelRegistryKey> registry,
        GenerationSlots slots, AsyncGenerations asyncGenerations, ServedClasses servedClasses, ServingNodeSettings settings, CancellationToken cancel)
    {
        var clock = Stopwatch.StartNew();
        if (http.Request.ContentLength > settings.MaxBodyBytes) return TooLarge(settings);
        if (!RequestGuards.IsJson(http.Request.ContentType)) return Rejected(RequestGuards.UnsupportedMediaType(http.Request.ContentType));
        // Read at most one byte past the limit; an oversized body is drained (up to Kestrel's hard cap) before the 413, so
        // the client reliably reads the answer instead of a reset connection.
        var buffer = new MemoryStream();
        try
        {
            var chunk = new byte[8192];
            int n;
            while (buffer.Length <= settings.MaxBodyBytes && (n = await http.Request.Body.ReadAsync(chunk, cancel)) > 0) buffer.Write(chunk, 0, n);
            if (buffer.Length > settings.MaxBodyBytes)
            {
                while (await http.Request.Body.ReadAsync(chunk, cancel) > 0) { }
                return TooLarge(settings);
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return TooLarge(settings);
        }
        var bytes = buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
        if (RequestGuards.FirstInvalidUtf8(bytes.Span) is { } offset)
            return Rejected(Results.Problem(statusCode: 400, title: "Malformed JSON", detail: $"the request body is not valid UTF-8 (at byte {offset})"));
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(bytes);
        }
        catch (JsonException e)
        {
            return Rejected(Results.Problem(statusCode: 400, title: "Malformed JSON", detail: $"the request body is not valid JSON: {e.Message}"));
        }
        using var body = document;

        var keyId = http.User.FindFirst(ApiKeyAuthentication.KeyIdClaim)?.Value ?? "anonymous";
        string? idempotencyKey = http.Request.Headers["Idempotency-Key"];
        if (idempotencyKey is not null && (idempotencyKey.Length is 0 or > MaxIdempotencyKeyLength || idempotencyKey.Any(c => c < ' ' || c > '~')))
            return Rejected(Results.ValidationProblem(new Dictionary<string, string[]> { ["Idempotency-Key"] = [$"must be 1 to {MaxIdempotencyKeyLength} printable ASCII characters"] }));
        var id = idempotencyKey is null ? "g" + Guid.NewGuid().ToString("N") : GenerationBodyValidator.IdFor(keyId, idempotencyKey);

        var snapshot = await Snapshot(registry, cancel);
        if (snapshot.Experts.Count == 0 || snapshot.Router is null)
            return Results.Problem(statusCode: 503, title: "Nothing to serve yet",
                detail: $"the store {snapshot.Store} has {snapshot.Experts.Count} published experts and {(snapshot.Router is null ? "no" : "a")} router; islands publish them as they train");
        var classes = servedClasses.For(snapshot);
        var (valid, errors) = GenerationBodyValidator.Validate(document.RootElement, classes.Count, classes.Names,
            idempotencyKey is null ? null : GenerationBodyValidator.SeedFor(id));
        if (valid is null) return Rejected(Results.ValidationProblem(errors, title: "Invalid generation request"));

        var generate = new Generate(id, ServingSettings.DefaultEnsemble, valid.Request, valid.RequestHash, ServingTelemetry.CurrentTraceParent());
        Activity.Current?.SetTag("islands.generation", id);
        var router = await routers.GetAsync(cancel);
        if (valid.Async)
        {
            switch (asyncGenerations.Begin(id, valid.RequestHash, out var known))
            {
                case AsyncBegin.Conflict: return Failure(EnsembleRouterActor.IdempotencyConflict(id));
                case AsyncBegin.Running: return Results.Accepted($"/v1/generations/{id}", Status(id, known, valid.Request.Steps));
            }
            var lease = slots.TryAcquire();
            if (lease is null)
            {
                asyncGenerations.Forget(id);
                return TooMany(settings);
            }
            var events = Channel.CreateUnbounded<IIslandsMessage>();
            system.ActorOf(GenerationWatcher.Props(router, generate, events.Writer, settings.Serving));
            // The router's first answer tells whether this key already belongs to another request (run or stored on any
            // node): that is a 422 now, never a 202 whose GET would return the other request's images.
            // Not the request's token: the generation is started, and a client hanging up must not orphan it.
            IIslandsMessage? first = null;
            using (var wait = new CancellationTokenSource(FirstAnswer))
            {
                try
                {
                    first = await events.Reader.ReadAsync(wait.Token);
                }
                catch (OperationCanceledException) { }
                catch (ChannelClosedException) { }
            }
            if (first is GenerationFailed { Status: 422 } refused)
            {
                lease.Dispose();
                asyncGenerations.Forget(id);
                return Failure(refused);
            }
            if (first is not null and not GenerationRetried) asyncGenerations.Update(id, first);
            _ = Task.Run(async () =>
            {
                using var held = lease;
                await foreach (var message in events.Reader.ReadAllAsync(CancellationToken.None))
                    if (message is not GenerationRetried) asyncGenerations.Update(id, message);
            }, CancellationToken.None);
            return Results.Accepted($"/v1/generations/{id}", new GenerationStatus(id, "accepted", 0, valid.Request.Steps, $"/v1/generations/{id}"));
        }

        using var permit = slots.TryAcquire();
        if (permit is null) return TooMany(settings);
        var channel = Channel.CreateUnbounded<IIslandsMessage>();
        var watcher = system.ActorOf(GenerationWatcher.Props(router, generate, channel.Writer, settings.Serving));
        var streaming = http.Request.Headers.Accept.Any(a => a?.Contains("text/event-stream", StringComparison.OrdinalIgnoreCase) == true);
        var retries = 0;
        try
        {
            if (streaming)
            {
                http.Response.ContentType = "text/event-stream";
                http.Response.Headers.CacheControl = "no-cache";
                http.Response.Headers["X-Generation-Id"] = id;
            }
            await foreach (var message in channel.Reader.ReadAllAsync(cancel))
            {
                switch (message)
                {
                    case GenerationRetried r:
                        retries = r.Attempt;
                        if (streaming) await Event(http, "retry", new { id, attempt = r.Attempt }, cancel);
                        break;
                    case GenerationAccepted a when streaming:
                        await Event(http, "accepted", new { id, queuedImages = a.QueuedImages }, cancel);
                        break;
                    case GenerationProgress p when streaming:
                        await Event(http, "progress", new { id, step = p.Step, steps = p.Steps, leftOutExperts = p.LeftOutExperts }, cancel);
                        break;
                    case GenerationCompleted done:
                        Record(clock, done.LeftOutExperts.Length > 0 ? "degraded" : "ok");
                        if (!streaming) return Render(done, valid.Format, retries);
                        await Event(http, "completed", Result(done, retries), cancel);
                        return Results.Empty;
                    case GenerationFailed failed:
                        Record(clock, "failed");
                        if (!streaming) return Failure(failed);
                        await Event(http, "failed", new { id, status = failed.Status, detail = failed.Reason }, cancel);
                        return Results.Empty;
                }
            }
            return Results.Problem(statusCode: 504, title: "Generation abandoned", detail: "the serving node stopped waiting for this generation");
        }
        finally
        {
            // A client that hung up stops only its watcher: the generation finishes and its stored result answers a retry.
            system.Stop(watcher);
        }
    }

    private static async Task<IResult> Get(string id, HttpContext http, IRequiredActor<EnsembleRouterActor> routers, AsyncGenerations asyncGenerations,
        ServingNodeSettings settings, CancellationToken cancel)
    {
        if (id.Length != 33 || id[0] is not ('g' or 'k') || !id[1..].All(Uri.IsHexDigit))
            return Results.Problem(statusCode: 404, title: "No such generation", detail: $"'{id}' is not a generation id");
        var format = http.Request.Query["format"].FirstOrDefault() ?? "json";
        if (format is not ("json" or "png")) return Results.ValidationProblem(new Dictionary<string, string[]> { ["format"] = ["must be png or json"] });
        if (new GenerationResultStore(settings.Serving.ResultsDirectory).TryLoad(id) is { } stored) return Render(stored, format, 0);
        if (asyncGenerations.TryGet(id, out var latest))
        {
            if (latest is GenerationFailed failed) return Failure(failed);
            if (latest is GenerationCompleted done) return Render(done, format, 0);
            return Results.Ok(Status(id, latest, 0));
        }
        var router = await routers.GetAsync(cancel);
        var state = await router.Ask<GenerationState>(new GetGeneration(id, ServingSettings.DefaultEnsemble), TimeSpan.FromSeconds(5), cancel);
        return state.Phase == "unknown"
            ? Results.Problem(statusCode: 404, title: "No such generation", detail: $"no serving node knows generation {id}")
            : Results.Ok(new GenerationStatus(id, state.Phase, state.Step, state.Steps, $"/v1/generations/{id}"));
    }

    private static async Task<IResult> Experts(IRequiredActor<ModelRegistryKey> registry, IServiceProvider services, CancellationToken cancel)
    {
        var snapshot = await Snapshot(registry, cancel);
        var count = snapshot.Router is null ? 0 : RouterExperts(snapshot.Router);
        count = Math.Max(count, snapshot.Experts.Select(e => e.Expert!.Value + 1).DefaultIfEmpty(0).Max());
        var experts = Enumerable.Range(0, count).Select(k => snapshot.Expert(k) is { } e
            ? new ExpertEntry(k, true, e.Island, e.Step, e.CheckpointDirectory, e.ManifestSha256, e.PublishedUtc)
            : new ExpertEntry(k, false, null, null, null, null, null)).ToList();
        var router = snapshot.Router is { } r ? new ExpertEntry(-1, true, r.Island, r.Step, r.CheckpointDirectory, r.ManifestSha256, r.PublishedUtc) : null;
        return Results.Ok(new ExpertsResponse(snapshot.Store, experts, router, snapshot.Refused, snapshot.ScannedUtc,
            services.GetService<PublicationMirror>()?.Status ?? []));
    }

    private static int RouterExperts(PublishedModel router)
    {
        try
        {
            return Diffusion.IO.Json.Read<Diffusion.Routing.RouterConfig>(Path.Combine(router.RunDirectory, Diffusion.Training.RunDirectory.ConfigFile)).ExpertCount;
        }
        catch (Diffusion.IslandsException)
        {
            return 0;
        }
    }

    private static async Task<PublishedModelsSnapshot> Snapshot(IRequiredActor<ModelRegistryKey> registry, CancellationToken cancel) =>
        await (await registry.GetAsync(cancel)).Ask<PublishedModelsSnapshot>(GetPublishedModels.Instance, TimeSpan.FromSeconds(10), cancel);

    private static GenerationStatus Status(string id, IIslandsMessage latest, int steps) => latest switch
    {
        GenerationProgress p => new GenerationStatus(id, "running", p.Step, p.Steps, $"/v1/generations/{id}"),
        _ => new GenerationStatus(id, "accepted", 0, steps, $"/v1/generations/{id}"),
    };

    private static IResult Render(GenerationCompleted done, string format, int retries)
    {
        if (format == "json") return Results.Json(Result(done, retries));
        var png = ImageGrid.EncodePng(done.Payload, done.Request.Count, done.Channels, done.Height, done.Width);
        return new PngResult(png, done, retries);
    }

    private static GenerationResult Result(GenerationCompleted done, int retries)
    {
        var plane = done.Channels * done.Height * done.Width;
        var images = Enumerable.Range(0, done.Request.Count)
            .Select(i => Convert.ToBase64String(ImageGrid.EncodePng(done.Payload[(i * plane)..((i + 1) * plane)], 1, done.Channels, done.Height, done.Width, padding: 0, scale: 1)))
            .ToArray();
        var perExpert = new long[done.ExpertCount];
        foreach (var k in done.Routing.SelectMany(r => r)) if (k >= 0) perExpert[k]++;
        var r = done.Request;
        return new GenerationResult(done.Id, r.Count, r.Classes?[0], r.Steps, r.Cfg, r.Strategy, r.Sampler ?? Diffusion.Sampling.FlowStep.Euler, r.Seed, images, done.Routing, perExpert, done.LeftOutExperts,
            done.LeftOutExperts.Length > 0, retries, done.RetriedRowSteps,
            new GenerationTimings(done.QueueSeconds, done.TotalSeconds - done.QueueSeconds, done.TotalSeconds), done.Checkpoints, done.NonFiniteImages);
    }

    private static IResult Failure(GenerationFailed failed) =>
        Results.Problem(statusCode: failed.Status, title: failed.Status switch
        {
            422 => "Idempotency-Key reused",
            503 => "Nothing to serve",
            504 => "Generation timed out",
            _ => "Generation failed",
        }, detail: failed.Reason);

    private static async Task Event(HttpContext http, string name, object data, CancellationToken cancel)
    {
        await http.Response.WriteAsync($"event: {name}\ndata: {JsonSerializer.Serialize(data, Diffusion.IO.Json.Web)}\n\n", cancel);
        await http.Response.Body.FlushAsync(cancel);
    }

    private static void Record(Stopwatch clock, string outcome) =>
        ServingTelemetry.RequestDuration.Record(clock.Elapsed.TotalSeconds, new KeyValuePair<string, object?>("outcome", outcome));

    private static IResult Rejected(IResult result)
    {
        ServingTelemetry.Rejected.Add(1, new KeyValuePair<string, object?>("reason", "invalid"));
        return result;
    }

    private static IResult TooLarge(ServingNodeSettings settings)
    {
        ServingTelemetry.Rejected.Add(1, new KeyValuePair<string, object?>("reason", "too-large"));
        return Results.Problem(statusCode: 413, title: "Request body too large",
            detail: $"the body may be at most {settings.MaxBodyBytes} bytes (islands.serving.http.max-body-bytes)");
    }

    private static IResult TooMany(ServingNodeSettings settings)
    {
        ServingTelemetry.Rejected.Add(1, new KeyValuePair<string, object?>("reason", "too-many"));
        return new RetryAfter(Results.Problem(statusCode: 429, title: "Too many generations in flight",
            detail: $"this node runs at most {settings.MaxInFlight} generations at once (islands.serving.http.max-in-flight); retry shortly"));
    }

    private sealed class RetryAfter(IResult inner) : IResult
    {
        public Task ExecuteAsync(HttpContext http)
        {
            http.Response.Headers.RetryAfter = "1";
            return inner.ExecuteAsync(http);
        }
    }

    /// <summary>A PNG grid with the generation's id, seed, left-out experts and retries in headers.</summary>
    private sealed class PngResult(byte[] png, GenerationCompleted done, int retries) : IResult
    {
        public Task ExecuteAsync(HttpContext http)
        {
            http.Response.ContentType = "image/png";
            http.Response.Headers["X-Generation-Id"] = done.Id;
            http.Response.Headers["X-Islands-Seed"] = done.Request.Seed.ToString(System.Globalization.CultureInfo.InvariantCulture);
            http.Response.Headers["X-Islands-Left-Out-Experts"] = string.Join(",", done.LeftOutExperts);
            http.Response.Headers["X-Islands-Retries"] = retries.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return http.Response.Body.WriteAsync(png).AsTask();
        }
    }
}
