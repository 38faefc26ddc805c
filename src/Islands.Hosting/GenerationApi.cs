using System.Diagnostics;
using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
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
public static partial class GenerationApi
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

    private static async Task<IResult> Post(HttpContext http, ActorSystem system, IRequiredActor<EnsembleRouterActor> routers,
        IRequiredActor<ModelRegistryKey> registry,
        GenerationSlots slots, AsyncGenerations asyncGenerations, ServedClasses servedClasses, ServingNodeSettings settings, CancellationToken cancel)
    {
        var clock = Stopwatch.StartNew();
        if (!RequestGuards.IsJson(http.Request.ContentType)) return Rejected(RequestGuards.UnsupportedMediaType(http.Request.ContentType));
        if (await RequestGuards.ReadBoundedAsync(http.Request, settings.MaxBodyBytes, cancel) is not { } bytes) return TooLarge(settings);
        if (RequestGuards.FirstInvalidUtf8(bytes.Span) is { } offset)
            return Rejected(Results.Problem(statusCode: 400, title: "Malformed JSON",
                detail: $"the request body is not valid UTF-8 (at byte {offset})"));
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
            return Rejected(Results.ValidationProblem(new Dictionary<string, string[]>
            {
                ["Idempotency-Key"] = [$"must be 1 to {MaxIdempotencyKeyLength} printable ASCII characters"],
            }));
        var id = idempotencyKey is null ? "g" + Guid.NewGuid().ToString("N") : GenerationBodyValidator.IdFor(keyId, idempotencyKey);

        var snapshot = await Snapshot(registry, cancel);
        if (snapshot.Experts.Count == 0 || snapshot.Router is null)
            return Results.Problem(statusCode: 503, title: "Nothing to serve yet",
                detail: $"the store {snapshot.Store} has {snapshot.Experts.Count} published experts " +
                        $"and {(snapshot.Router is null ? "no" : "a")} router; islands publish them as they train");
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

        var permit = slots.TryAcquire();
        if (permit is null) return TooMany(settings);
        var channel = Channel.CreateUnbounded<IIslandsMessage>();
        var watcher = system.ActorOf(GenerationWatcher.Props(router, generate, channel.Writer, settings.Serving));
        if (http.Request.Headers.Accept.Any(a => a?.Contains("text/event-stream", StringComparison.OrdinalIgnoreCase) == true))
        {
            http.Response.Headers["X-Generation-Id"] = id;
            return TypedResults.ServerSentEvents(EventStream(system, watcher, permit, channel.Reader, id, clock, cancel));
        }
        var retries = 0;
        try
        {
            await foreach (var message in channel.Reader.ReadAllAsync(cancel))
            {
                switch (message)
                {
                    case GenerationRetried r:
                        retries = r.Attempt;
                        break;
                    case GenerationCompleted done:
                        Record(clock, done.LeftOutExperts.Length > 0 ? "degraded" : "ok");
                        return Render(done, valid.Format, retries);
                    case GenerationFailed failed:
                        Record(clock, "failed");
                        return Failure(failed);
                }
            }
            return Results.Problem(statusCode: 504, title: "Generation abandoned", detail: "the serving node stopped waiting for this generation");
        }
        finally
        {
            // A client that hung up stops only its watcher: the generation finishes and its stored result answers a retry.
            system.Stop(watcher);
            permit.Dispose();
        }
    }

    /// <summary>
    /// A generation as server-sent events (ASP.NET Core's): accepted, retry, progress (one per step), then completed (the
    /// JSON result) or failed. The request's slot and watcher are held until the stream ends or the client hangs up.
    /// </summary>
    private static async IAsyncEnumerable<SseItem<object>> EventStream(ActorSystem system, IActorRef watcher, IDisposable permit,
        ChannelReader<IIslandsMessage> reader, string id, Stopwatch clock, [EnumeratorCancellation] CancellationToken cancel)
    {
        var retries = 0;
        try
        {
            await foreach (var message in reader.ReadAllAsync(cancel))
            {
                switch (message)
                {
                    case GenerationRetried r:
                        retries = r.Attempt;
                        yield return new SseItem<object>(new { id, attempt = r.Attempt }, "retry");
                        break;
                    case GenerationAccepted a:
                        yield return new SseItem<object>(new { id, queuedImages = a.QueuedImages }, "accepted");
                        break;
                    case GenerationProgress p:
                        yield return new SseItem<object>(new { id, step = p.Step, steps = p.Steps, leftOutExperts = p.LeftOutExperts }, "progress");
                        break;
                    case GenerationCompleted done:
                        Record(clock, done.LeftOutExperts.Length > 0 ? "degraded" : "ok");
                        yield return new SseItem<object>(Result(done, retries), "completed");
                        yield break;
                    case GenerationFailed failed:
                        Record(clock, "failed");
                        yield return new SseItem<object>(new { id, status = failed.Status, detail = failed.Reason }, "failed");
                        yield break;
                }
            }
        }
        finally
        {
            system.Stop(watcher);
            permit.Dispose();
        }
    }
}
