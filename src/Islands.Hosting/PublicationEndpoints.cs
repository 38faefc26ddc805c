using Islands.Diffusion.Checkpoints;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Islands.Hosting;

/// <summary>
/// An island node's offer of its published checkpoint to serving clusters that share no filesystem with it:
/// <c>GET /v1/publication</c> (the run's published.json), <c>GET /v1/publication/config.json</c> (the run's config, hashed in
/// the publication) and <c>GET /v1/publication/checkpoints/{name}/{file}</c> (a
/// file of a retained checkpoint, with range requests so an interrupted transfer resumes). Behind the island's
/// publication keys; the fetcher verifies every file against the publication's hashes, so the island only serves bytes.
/// </summary>
public static class PublicationEndpoints
{
    public const string SchemeName = "PublicationKey";
    public const string Path = "/v1/publication";

    public static void AddServices(IServiceCollection services, IReadOnlyList<string> keys)
    {
        services.AddAuthentication().AddScheme<ApiKeyOptions, ApiKeyAuthentication>(SchemeName, o =>
        {
            o.KeyDigests = [.. keys.Select(ApiKeyAuthentication.Digest)];
            o.ChallengeDetail = keys.Count == 0
                ? "this island offers its publication to nobody: give it islands:publication:keys (ISLANDS_PUBLICATION_KEYS)"
                : "send 'Authorization: Bearer <key>' with one of the island's islands:publication:keys";
        });
        services.AddAuthorization(o => o.AddPolicy(SchemeName, p => p.AddAuthenticationSchemes(SchemeName).RequireAuthenticatedUser()));
    }

    public static void Map(IEndpointRouteBuilder app, string runDirectory)
    {
        var group = app.MapGroup(Path).RequireAuthorization(SchemeName);
        group.MapGet("", () =>
        {
            var published = System.IO.Path.Combine(runDirectory, PublishedCheckpoint.FileName);
            // Read whole: the island replaces the file by rename at any moment, and a reader must get one version.
            return File.Exists(published)
                ? Results.Bytes(File.ReadAllBytes(published), "application/json")
                : Results.Problem(statusCode: 404, title: "nothing published yet",
                    detail: $"{runDirectory} has no {PublishedCheckpoint.FileName}; the island publishes at its first checkpoint");
        });
        group.MapGet("/config.json", () =>
        {
            var config = System.IO.Path.Combine(runDirectory, Diffusion.Training.RunDirectory.ConfigFile);
            return File.Exists(config)
                ? Results.Bytes(File.ReadAllBytes(config), "application/json")
                : Results.Problem(statusCode: 404, title: "no run config",
                    detail: $"{runDirectory} has no {Diffusion.Training.RunDirectory.ConfigFile} yet");
        });
        group.MapGet("/checkpoints/{name}/{file}", (string name, string file) =>
        {
            var directory = System.IO.Path.Combine(runDirectory, "checkpoints", name);
            if (CheckpointStore.Parse(name) is null || !Directory.Exists(directory))
                return Results.Problem(statusCode: 404, title: "no such checkpoint",
                    detail: $"'{name}' is not a retained checkpoint of this island (a newer publication may have replaced it)");
            // Only the manifest and the files it names: nothing else under the run directory is reachable.
            if (file != CheckpointManifest.FileName && !ManifestNames(directory, file))
                return Results.Problem(statusCode: 404, title: "no such file", detail: $"'{file}' is not a file of checkpoint {name}");
            return Results.File(System.IO.Path.Combine(directory, file), "application/octet-stream", enableRangeProcessing: true);
        });
    }

    private static bool ManifestNames(string directory, string file)
    {
        try
        {
            return Diffusion.IO.Json.Read<CheckpointManifest>(System.IO.Path.Combine(directory, CheckpointManifest.FileName)).Files.ContainsKey(file);
        }
        catch (Exception e) when (e is Diffusion.IslandsException or IOException)
        {
            return false;
        }
    }
}
