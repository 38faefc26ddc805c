using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Akka.Actor;
using Akka.Hosting;
using Islands.Actors.Serving;
using Islands.Diffusion.Distillation;
using Islands.Diffusion.Serving;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Islands.Hosting;

/// <summary>Registry key of the node's distillation jobs actor.</summary>
public sealed class DistillationsKey;

/// <summary>
/// Score distillation as a job of the serving cluster: POST /v1/distillations accepts one (202, idempotent by key),
/// GET reads its status, /events streams its progress (stage, step, a preview grid), DELETE cancels it, and its results
/// are files: grid.png, trajectory.gif and summary.json. The job runs on the node that accepted it, with the cluster's
/// score service as its prior; it is on disk before it is accepted and resumes from its checkpoint if the node restarts.
/// </summary>
public static class DistillationApi
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(10);

    public sealed record DistillationView(string Id, string Status, string Stage, long Step, long Steps, double? Direction, string? Detail,
        long DegradedRows, int Retries, string Location, string Events, string? Grid, string? Trajectory, string? Summary, string? Preview);

    private static readonly Dictionary<string, (string File, string MediaType)> Files = new()
    {
        ["grid.png"] = (DistillationRun.GridFile, "image/png"),
        ["trajectory.gif"] = (DistillationRun.TrajectoryFile, "image/gif"),
        ["summary.json"] = (DistillationRun.SummaryFile, "application/json"),
    };

    public static void Map(RouteGroupBuilder v1, ServingNodeSettings settings)
    {
        v1.MapPost("/distillations", Post).Accepts<JsonElement>("application/json")
            .Produces<DistillationView>(StatusCodes.Status202Accepted).ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity).ProducesProblem(StatusCodes.Status503ServiceUnavailable)
            .WithSummary("Start a score distillation (sds, nfsd or bridge; class, translate or illusion) with the served ensemble as the prior")
            .WithDescription("Header Idempotency-Key makes a retry find the same job.");
        v1.MapGet("/distillations/{id}", Get).Produces<DistillationView>().ProducesProblem(StatusCodes.Status404NotFound)
            .WithSummary("Status of a distillation (preview=true adds the latest grid as base64 PNG)");
        v1.MapGet("/distillations/{id}/events",
            Events).WithSummary("Server-sent progress of a distillation: progress, then completed, failed or cancelled");
        v1.MapGet("/distillations/{id}/{file}", File).WithSummary("A result file: grid.png, trajectory.gif or summary.json");
        v1.MapDelete("/distillations/{id}", Cancel).Produces<DistillationView>(StatusCodes.Status202Accepted).WithSummary("Cancel a distillation");
    }

    public static string Root(ServingNodeSettings settings) => Path.Combine(settings.Serving.ResultsDirectory, "distillations");

    private static async Task<IResult> Post(HttpContext http, IRequiredActor<DistillationsKey> jobs, IRequiredActor<ModelRegistryKey> registry,
        ServedClasses servedClasses, ServingNodeSettings settings, CancellationToken cancel)
    {
        if (!RequestGuards.IsJson(http.Request.ContentType)) return RequestGuards.UnsupportedMediaType(http.Request.ContentType);
        if (await RequestGuards.ReadBoundedAsync(http.Request, settings.MaxBodyBytes, cancel) is not { } bytes)
            return Results.Problem(statusCode: 413, title: "Request body too large",
                detail: $"the body may be at most {settings.MaxBodyBytes} bytes (islands:serving:http:maxBodyBytes)");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(bytes);
        }
        catch (JsonException e)
        {
            return Results.Problem(statusCode: 400, title: "Malformed JSON", detail: $"the request body is not valid JSON: {e.Message}");
        }
        using var body = document;
        string? key = http.Request.Headers["Idempotency-Key"];
        if (key is not null && (key.Length is 0 or > 200 || key.Any(c => c < ' ' || c > '~')))
            return Results.ValidationProblem(new Dictionary<string,
                string[]> { ["Idempotency-Key"] = ["must be 1 to 200 printable ASCII characters"] });
        var snapshot = await (await registry.GetAsync(cancel)).Ask<PublishedModelsSnapshot>(GetPublishedModels.Instance, AskTimeout, cancel);
        if (snapshot.Experts.Count == 0 || snapshot.Router is null)
            return Results.Problem(statusCode: 503, title: "Nothing to serve yet",
                detail: $"the store {snapshot.Store} has {snapshot.Experts.Count} published experts and " +
                    $"{(snapshot.Router is null ? "no" : "a")} router");
        var shape = ServedModels.ImageShape(snapshot.Experts[0]);
        var served = new DistillationBody.Served(shape, servedClasses.For(snapshot), settings.Serving.Store,
            Math.Max(1, settings.Serving.MaxScoreRows(shape.C * shape.H * shape.W) / 2));
        var (request, hash, errors) = DistillationBody.Validate(body.RootElement, served);
        if (request is null) return Results.ValidationProblem(errors, title: "Invalid distillation request");
        var keyId = http.User.FindFirst(ApiKeyAuthentication.KeyIdClaim)?.Value ?? "anonymous";
        var id = key is null ? "d" + Guid.NewGuid().ToString("N") : "d" + GenerationBodyValidator.IdFor(keyId, key)[1..];
        object answer;
        try
        {
            answer = await (await jobs.GetAsync(cancel)).Ask<object>(new StartDistillation(id, request, hash), AskTimeout, cancel);
        }
        catch (AskTimeoutException)
        {
            return Results.Problem(statusCode: 504, title: "Distillations busy",
                detail: "this node's distillation jobs did not answer in time; retry");
        }
        return answer switch
        {
            DistillationRefused refused => Results.Problem(statusCode: refused.Status, title: "Idempotency-Key reused", detail: refused.Reason),
            DistillationStatus status => Results.Accepted($"/v1/distillations/{id}", View(status, preview: false)),
            _ => Results.Problem(statusCode: 500, title: "Unexpected answer"),
        };
    }

    private static bool IsId(string id) => id.Length == 33 && id[0] == 'd' && id[1..].All(Uri.IsHexDigit);

    private static IResult NotFound(string id) =>
        Results.Problem(statusCode: 404, title: "No such distillation", detail: $"this node has no distillation '{id}'");

    /// <summary>The job's status, or null when the jobs actor did not answer in time (the caller answers 503).</summary>
    private static async Task<DistillationStatus?> Status(IRequiredActor<DistillationsKey> jobs, object message, CancellationToken cancel)
    {
        try
        {
            return await (await jobs.GetAsync(cancel)).Ask<DistillationStatus>(message, AskTimeout, cancel);
        }
        catch (AskTimeoutException)
        {
            return null;
        }
    }

    private static IResult Busy() => Results.Problem(statusCode: 503, title: "Distillations busy",
        detail: "this node's distillation jobs did not answer in time; retry");

    private static async Task<IResult> Get(string id, HttpContext http, IRequiredActor<DistillationsKey> jobs, CancellationToken cancel)
    {
        if (!IsId(id)) return NotFound(id);
        if (await Status(jobs, new GetDistillation(id), cancel) is not { } status) return Busy();
        return status.Phase == "unknown" ? NotFound(id) : Results.Ok(View(status, http.Request.Query["preview"] == "true"));
    }

    private static async Task<IResult> Cancel(string id, IRequiredActor<DistillationsKey> jobs, CancellationToken cancel)
    {
        if (!IsId(id)) return NotFound(id);
        if (await Status(jobs, new CancelDistillation(id), cancel) is not { } status) return Busy();
        return status.Phase == "unknown" ? NotFound(id) : Results.Accepted($"/v1/distillations/{id}", View(status, preview: false));
    }

    private static async Task<IResult> File(string id, string file, IRequiredActor<DistillationsKey> jobs, ServingNodeSettings settings,
        CancellationToken cancel)
    {
        if (!IsId(id) || !Files.TryGetValue(file, out var known))
            return Results.Problem(statusCode: 404, title: "No such file",
                detail: "expected grid.png, trajectory.gif or summary.json of a distillation");
        if (await Status(jobs, new GetDistillation(id), cancel) is not { } status) return Busy();
        var path = Path.Combine(Root(settings), id, known.File);
        return status.Phase == "completed" && System.IO.File.Exists(path) ? Results.File(path, known.MediaType)
            : Results.Problem(statusCode: 404, title: "No result",
                detail: $"{file} of {id} exists once the distillation has completed (it is {status.Phase})");
    }

    private static async Task<IResult> Events(string id, IRequiredActor<DistillationsKey> jobs, CancellationToken cancel)
    {
        if (!IsId(id)) return NotFound(id);
        if (await Status(jobs, new GetDistillation(id), cancel) is not { } first) return Busy();
        return first.Phase == "unknown" ? NotFound(id) : TypedResults.ServerSentEvents(Stream(jobs, first, cancel));
    }

    /// <summary>A progress event whenever the job moves to a new frame, then one event naming how it ended.</summary>
    private static async IAsyncEnumerable<SseItem<object>> Stream(IRequiredActor<DistillationsKey> jobs, DistillationStatus status,
        [EnumeratorCancellation] CancellationToken cancel)
    {
        long? lastStep = null;
        while (true)
        {
            if (status.Finished)
            {
                // The last frame (the final images) may land after the previous poll: it is still reported before the end.
                if (status.Step != lastStep && status.Preview is not null && status.Phase == "completed")
                    yield return new SseItem<object>(View(status, preview: true), "progress");
                yield return new SseItem<object>(View(status, preview: false), status.Phase);
                yield break;
            }
            if (status.Step != lastStep && status.Preview is not null)
            {
                lastStep = status.Step;
                yield return new SseItem<object>(View(status, preview: true), "progress");
            }
            await Task.Delay(TimeSpan.FromMilliseconds(200), cancel);
            status = await Status(jobs, new GetDistillation(status.Id), cancel) ?? status;
        }
    }

    private static DistillationView View(DistillationStatus s, bool preview)
    {
        var location = $"/v1/distillations/{s.Id}";
        var done = s.Phase == "completed";
        return new DistillationView(s.Id, s.Phase, s.Stage, s.Step, s.Steps, float.IsFinite(s.Direction) ? s.Direction : null, s.Detail,
            s.DegradedRows,
            s.Retries, location, location + "/events", done ? location + "/grid.png" : null, done ? location + "/trajectory.gif" : null,
            done ? location + "/summary.json" : null, preview && s.Preview is { } png ? Convert.ToBase64String(png) : null);
    }
}
