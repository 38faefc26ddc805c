using System.Globalization;
using System.Text.Json;
using Akka.Actor;
using Akka.Hosting;
using Islands.Actors.Serving;
using Islands.Diffusion.Serving;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Net.Http.Headers;

namespace Islands.Hosting;

/// <summary>
/// POST /v1/scores: the routed ensemble's velocity at points a client chooses (x_t, t, class, guidance per row), the
/// building block of score distillation. The rows join the router's continuous batch beside generations' rows, so a
/// query costs one routed step; ε̂ = x_t + (1−t)·v̂ and x̂0 = x_t − t·v̂ follow from the answer.
/// </summary>
public static class ScoreApi
{
    public const string RawMediaType = "application/octet-stream";

    public sealed record ScoreResult(string Id, int Count, int Channels, int Height, int Width, float[] Velocity, int[] Routing,
        int[] LeftOutExperts, bool Degraded, IReadOnlyList<ServedCheckpoint> Checkpoints, double Seconds);

    public static void Map(RouteGroupBuilder v1) =>
        v1.MapPost("/scores", Post)
            .Accepts<JsonElement>("application/json", RawMediaType)
            .Produces<ScoreResult>(StatusCodes.Status200OK, "application/json")
            .Produces(StatusCodes.Status200OK, contentType: RawMediaType)
            .ProducesValidationProblem().ProducesProblem(StatusCodes.Status413PayloadTooLarge)
            .ProducesProblem(StatusCodes.Status429TooManyRequests).ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .WithSummary("Velocities of the routed ensemble at given points (score queries)")
            .WithDescription("JSON {x, t, class, cfg, strategy}, or raw float32 x with the other fields in the query string. " +
                "Accept: application/octet-stream answers raw float32 velocities with X-Islands-Routing and X-Islands-Left-Out-Experts.");

    private static async Task<IResult> Post(HttpContext http, IRequiredActor<EnsembleRouterActor> routers, IRequiredActor<ModelRegistryKey> registry,
        ServedClasses servedClasses, GenerationSlots slots, ServingNodeSettings settings, CancellationToken cancel)
    {
        var raw = MediaTypeHeaderValue.TryParse(http.Request.ContentType, out var media) &&
                  media.MediaType.Equals(RawMediaType, StringComparison.OrdinalIgnoreCase);
        if (!raw && !RequestGuards.IsJson(http.Request.ContentType)) return RequestGuards.UnsupportedMediaType(http.Request.ContentType);
        var snapshot = await (await registry.GetAsync(cancel)).Ask<PublishedModelsSnapshot>(GetPublishedModels.Instance, TimeSpan.FromSeconds(10),
            cancel);
        if (snapshot.Experts.Count == 0 || snapshot.Router is null)
            return Results.Problem(statusCode: 503, title: "Nothing to serve yet",
                detail: $"the store {snapshot.Store} has {snapshot.Experts.Count} published experts and " +
                    $"{(snapshot.Router is null ? "no" : "a")} router");
        var shape = ServedModels.ImageShape(snapshot.Experts[0]);
        var limits = new ScoreLimits(shape, servedClasses.For(snapshot), settings.Serving.MaxScoreRows(shape.C * shape.H * shape.W),
            ServedModels.DegradedClassCount(snapshot.Experts));
        var limit = ScoreBody.MaxBytes(limits, raw);
        if (http.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size) size.MaxRequestBodySize = limit;
        if (await RequestGuards.ReadBoundedAsync(http.Request, limit, cancel) is not { } body)
            return Results.Problem(statusCode: 413, title: "Request body too large",
                detail: $"a score query holds at most {limits.MaxRows} images of {shape.C}×{shape.H}×{shape.W} ({limit} bytes)");
        ScoreQuery? query;
        Dictionary<string, string[]> errors;
        if (raw) (query, errors) = ScoreBody.FromRaw(body, http.Request.Query, limits);
        else
        {
            JsonDocument document;
            try
            {
                document = JsonDocument.Parse(body);
            }
            catch (JsonException e)
            {
                return Results.Problem(statusCode: 400, title: "Malformed JSON", detail: $"the request body is not valid JSON: {e.Message}");
            }
            using (document) (query, errors) = ScoreBody.FromJson(document.RootElement, limits);
        }
        if (query is null) return Results.ValidationProblem(errors, title: "Invalid score query");
        using var permit = slots.TryAcquire();
        if (permit is null)
            return Results.Problem(statusCode: 429, title: "Too many requests in flight",
                detail: $"this node runs at most {settings.MaxInFlight} requests at once (islands:serving:http:maxInFlight); retry shortly");
        var router = await routers.GetAsync(cancel);
        object answer;
        try
        {
            answer = await router.Ask<object>(query, settings.Serving.RequestTimeout + TimeSpan.FromSeconds(5), cancel);
        }
        catch (AskTimeoutException)
        {
            return Results.Problem(statusCode: 504, title: "Score query timed out",
                detail: "the router did not answer in time (its shard may be moving)");
        }
        return answer switch
        {
            ScoreAnswer a => Render(http, a),
            GenerationFailed f when f.Status == 400 => Results.ValidationProblem(new Dictionary<string, string[]> { ["x"] = [f.Reason] },
                title: "Invalid score query"),
            GenerationFailed f => Results.Problem(statusCode: f.Status, title: "Score query failed", detail: f.Reason),
            _ => Results.Problem(statusCode: 500, title: "Unexpected answer"),
        };
    }

    private static IResult Render(HttpContext http, ScoreAnswer a)
    {
        var count = a.Routing.Length;
        if (http.Request.Headers.Accept.Any(v => v?.Contains(RawMediaType, StringComparison.OrdinalIgnoreCase) == true))
        {
            http.Response.Headers["X-Islands-Routing"] = string.Join(",", a.Routing);
            http.Response.Headers["X-Islands-Left-Out-Experts"] = string.Join(",", a.LeftOutExperts);
            http.Response.Headers["X-Islands-Shape"] = string.Join(",", new[] { count, a.Channels, a.Height, a.Width }
                .Select(v => v.ToString(CultureInfo.InvariantCulture)));
            return Results.Bytes(a.Payload, RawMediaType);
        }
        var velocity = new float[a.Payload.Length / sizeof(float)];
        Buffer.BlockCopy(a.Payload, 0, velocity, 0, a.Payload.Length);
        return Results.Json(new ScoreResult(a.Id, count, a.Channels, a.Height, a.Width, velocity, a.Routing, a.LeftOutExperts,
            a.LeftOutExperts.Length > 0, a.Checkpoints, a.TotalSeconds));
    }
}
