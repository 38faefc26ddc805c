using System.Net.Http.Headers;
using System.Text.Json;
using Islands.Diffusion;

namespace Islands.Cli.Demo;

public sealed partial class LocalDemo
{
    /// <summary>Waits until the API serves every island's final publication (the registry rescans the store every few seconds).</summary>
    public async Task WaitForFinalPublicationsAsync(CancellationToken cancel)
    {
        var key = (await File.ReadAllTextAsync(ApiKeyFile, cancel)).Trim();
        using var http = new HttpClient { BaseAddress = new Uri(ApiUrl! + "/"), Timeout = TimeSpan.FromSeconds(10) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        var wanted = islands.ToDictionary(i => i.Island,
            i => Diffusion.Checkpoints.PublishedCheckpoint.ReadVerified(Path.Combine(Store, i.Island)).Published.Step);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            using var document = JsonDocument.Parse(await http.GetStringAsync("v1/experts", cancel));
            var served = document.RootElement.GetProperty("experts").EnumerateArray().Append(document.RootElement.GetProperty("router"))
                .Where(e => e.ValueKind == JsonValueKind.Object && e.GetProperty("island").ValueKind == JsonValueKind.String
                    && e.GetProperty("step").ValueKind == JsonValueKind.Number)
                .ToDictionary(e => e.GetProperty("island").GetString()!, e => e.GetProperty("step").GetInt64());
            var behind = wanted.Where(w => served.GetValueOrDefault(w.Key, -1) != w.Value).Select(w => w.Key).ToList();
            if (behind.Count == 0) return;
            if (DateTime.UtcNow > deadline)
                throw new IslandsException($"the serving node still does not serve the final checkpoints of {string.Join(", ", behind)} after 60 s");
            await Task.Delay(500, cancel);
        }
    }
}
