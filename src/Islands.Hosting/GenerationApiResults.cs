using System.Diagnostics;
using Akka.Actor;
using Akka.Hosting;
using Islands.Actors;
using Islands.Actors.Serving;
using Islands.Diffusion.Imaging;
using Islands.Diffusion.Serving;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.AspNetCore.Http;

namespace Islands.Hosting;

/// <summary>The generation API's reads (a generation by id, the published experts) and how answers and failures are rendered.</summary>
public static partial class GenerationApi
{
    private static async Task<IResult> Get(string id, HttpContext http, IRequiredActor<EnsembleRouterActor> routers,
        AsyncGenerations asyncGenerations,
        ServingNodeSettings settings, CancellationToken cancel)
    {
        if (id.Length != 33 || id[0] is not ('g' or 'k') || !id[1..].All(Uri.IsHexDigit))
            return Results.Problem(statusCode: 404, title: "No such generation", detail: $"'{id}' is not a generation id");
        var format = http.Request.Query["format"].FirstOrDefault() ?? "json";
        if (format is not ("json" or "png"))
            return Results.ValidationProblem(new Dictionary<string, string[]> { ["format"] = ["must be png or json"] });
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
        var router = snapshot.Router is { } r ? new ExpertEntry(-1, true, r.Island, r.Step, r.CheckpointDirectory, r.ManifestSha256,
            r.PublishedUtc) : null;
        return Results.Ok(new ExpertsResponse(snapshot.Store, experts, router, snapshot.Refused, snapshot.ScannedUtc,
            services.GetService<PublicationMirror>()?.Status ?? []));
    }

    private static int RouterExperts(PublishedModel router)
    {
        try
        {
            return Diffusion.IO.Json.Read<Diffusion.Routing.RouterConfig>(Path.Combine(router.RunDirectory,
                Diffusion.Training.RunDirectory.ConfigFile)).ExpertCount;
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
            .Select(i => Convert.ToBase64String(ImageGrid.EncodePng(done.Payload[(i * plane)..((i + 1) * plane)], 1, done.Channels, done.Height,
                done.Width, padding: 0, scale: 1)))
            .ToArray();
        var perExpert = new long[done.ExpertCount];
        foreach (var k in done.Routing.SelectMany(r => r)) if (k >= 0) perExpert[k]++;
        var r = done.Request;
        return new GenerationResult(done.Id, r.Count, r.Classes?[0], r.Steps, r.Cfg, r.Strategy, r.Sampler ?? Diffusion.Sampling.FlowStep.Euler,
            r.Seed, images, done.Routing, perExpert, done.LeftOutExperts,
            done.LeftOutExperts.Length > 0, retries, done.RetriedRowSteps,
            new GenerationTimings(done.QueueSeconds, done.TotalSeconds - done.QueueSeconds, done.TotalSeconds), done.Checkpoints,
            done.NonFiniteImages, done.Channels, done.Height, done.Width);
    }

    private static IResult Failure(GenerationFailed failed) =>
        Results.Problem(statusCode: failed.Status, title: failed.Status switch
        {
            422 => "Idempotency-Key reused",
            503 => "Nothing to serve",
            504 => "Generation timed out",
            _ => "Generation failed",
        }, detail: failed.Reason);

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
            detail: $"the body may be at most {settings.MaxBodyBytes} bytes (islands:serving:http:maxBodyBytes)");
    }

    private static IResult TooMany(ServingNodeSettings settings)
    {
        ServingTelemetry.Rejected.Add(1, new KeyValuePair<string, object?>("reason", "too-many"));
        return new RetryAfter(Results.Problem(statusCode: 429, title: "Too many generations in flight",
            detail: $"this node runs at most {settings.MaxInFlight} generations at once (islands:serving:http:maxInFlight); retry shortly"));
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
