using System.Net;
using System.Text.Json;
using Islands.Diffusion;
using Islands.Diffusion.Distillation;
using Islands.Diffusion.IO;
using Islands.Hosting;

namespace Islands.Cli.Commands;

/// <summary><c>islands distill ... --url</c>: the run as a job of a serving cluster, followed until it ends.</summary>
public static partial class DistillCommands
{
    /// <summary>What --out remembers of a served job, so that a rerun follows the same job instead of starting another.</summary>
    private sealed record RemoteJob(string Url, string IdempotencyKey, string? Id);

    private const string RemoteFile = "remote.json";

    private static async Task<int> RemoteAsync(CliContext ctx, string url, Dictionary<string, object?> body, string outDir, string title,
        CancellationToken cancel)
    {
        Directory.CreateDirectory(outDir);
        var remotePath = Path.Combine(outDir, RemoteFile);
        var remote = File.Exists(remotePath) ? Json.Read<RemoteJob>(remotePath) : new RemoteJob(url, Guid.NewGuid().ToString("N"), null);
        if (!File.Exists(remotePath)) Json.WriteAtomic(remotePath, remote);
        else if (remote.Url != url) ctx.Log($"{outDir} followed a job of {remote.Url}; asking {url} with the same key");
        using var client = GenerationClient.Create(url, Environment.GetEnvironmentVariable(ServingCommands.ApiKeyVariable), TimeSpan.FromSeconds(60),
            log: ctx.Log);
        var (status, reason, answer) = await client.SendAsync(HttpMethod.Post, "v1/distillations", body, remote.IdempotencyKey, cancel);
        if (status != HttpStatusCode.Accepted)
            throw new IslandsException($"{client.BaseAddress}v1/distillations: {(int)status} {reason}: {GenerationClient.Describe(answer)}" +
                (status == HttpStatusCode.UnprocessableEntity ? $" (a different request was sent before from {outDir}; use another --out)" : ""));
        var id = JsonDocument.Parse(answer).RootElement.GetProperty("id").GetString()!;
        Json.WriteAtomic(remotePath, remote with { Id = id });
        ctx.Log($"distillation {id} accepted by {client.BaseAddress}; rerun the same command to follow it again");

        var reporter = new ProgressReporter(ctx, title);
        var steps = body["steps"] is int s ? s : 0;
        var final = await reporter.RunAsync(steps, async report =>
        {
            while (true)
            {
                var (code, why, bytes) = await client.SendAsync(HttpMethod.Get, $"v1/distillations/{id}", null, null, cancel);
                if (code != HttpStatusCode.OK)
                    throw new IslandsException($"{client.BaseAddress}v1/distillations/{id}: {(int)code} {why}: {GenerationClient.Describe(bytes)}");
                var view = JsonSerializer.Deserialize<DistillationApi.DistillationView>(bytes, Json.Web)!;
                report(view.Step, $"{view.Stage}, |direction|² {view.Direction:F4}");
                if (view.Status is "completed" or "failed" or "cancelled") return view;
                await System.Threading.Tasks.Task.Delay(TimeSpan.FromMilliseconds(500), cancel);
            }
        });
        if (final.Status == "failed") throw new IslandsException($"distillation {id} failed on the serving cluster: {final.Detail}");
        if (final.Status == "cancelled")
        {
            ctx.Log($"distillation {id} was cancelled on the serving cluster");
            return ExitCodes.Cancelled;
        }
        foreach (var file in new[] { DistillationRun.GridFile, DistillationRun.TrajectoryFile, DistillationRun.SummaryFile })
        {
            var (code, why, bytes) = await client.SendAsync(HttpMethod.Get, $"v1/distillations/{id}/{file}", null, null, cancel);
            if (code != HttpStatusCode.OK) throw new IslandsException($"{client.BaseAddress}v1/distillations/{id}/{file}: {(int)code} {why}");
            AtomicFile.Write(Path.Combine(outDir, file), stream => stream.Write(bytes));
        }
        var summary = Json.Read<DistillationSummary>(Path.Combine(outDir, DistillationRun.SummaryFile));
        ctx.Result(new { id, final.DegradedRows, final.Retries, summary }, w =>
        {
            Describe(w, summary with { Grid = Path.Combine(outDir, DistillationRun.GridFile) }, null);
            w.WriteLine($"  served: distillation {id}, {final.Retries} score queries sent again, {final.DegradedRows} rows degraded; " +
                $"trajectory {Path.Combine(outDir, DistillationRun.TrajectoryFile)}");
        });
        return ExitCodes.Ok;
    }
}
