using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Islands.Actors;
using Islands.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Islands.Island.Tests;

/// <summary>A NaN in a status or result never turns an answer into a 500: the nodes' web hosts write it as null.</summary>
public sealed class NonFiniteHttpSpecs
{
    private static JobStatus NanJob() => new("expert-0", "expert:0", "diverged", 31, 500, float.NaN, double.PositiveInfinity,
        new CommittedCheckpoint(30, "checkpoints/step-000000030", "abcdef0123456789", float.NaN, DateTimeOffset.UnixEpoch), 0, 1, [], "node-a", "loss is NaN");

    [Fact]
    public async Task Should_answer_a_status_with_a_nan_loss_with_200_and_null()
    {
        // The web host every node builds (IslandNode's /status answers exactly this way).
        var app = NodeHost.CreateBuilder("127.0.0.1", 0, TimeSpan.FromSeconds(5), null).Build();
        var status = new IslandStatus("expert-0", "akka.tcp://a@127.0.0.1:1", null, [], NanJob(), null);
        app.MapGet("/status", () => Results.Json(status));
        app.MapGet("/ok", () => Results.Ok(new { loss = float.NaN, seconds = double.NegativeInfinity, curve = new[] { 1.5, double.NaN } }));
        await app.StartAsync();
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri(IslandNode.HttpAddress(app)) };
            using var response = await http.GetAsync("/status");
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, text);
            var job = JsonDocument.Parse(text).RootElement.GetProperty("job");
            Assert.Equal(JsonValueKind.Null, job.GetProperty("loss").ValueKind);
            Assert.Equal(JsonValueKind.Null, job.GetProperty("imagesPerSecond").ValueKind);
            Assert.Equal(JsonValueKind.Null, job.GetProperty("lastCheckpoint").GetProperty("loss").ValueKind);
            Assert.Equal("diverged", job.GetProperty("phase").GetString());
            Assert.Equal(31, job.GetProperty("step").GetInt64());

            // What the CLI and the demo read back: the nullable loss is unknown, the checkpoint's (never null) loss is NaN.
            var back = (await http.GetFromJsonAsync<IslandStatus>("/status", Diffusion.IO.Json.Options))!.Job!;
            Assert.Null(back.Loss);
            Assert.True(double.IsNaN(back.ImagesPerSecond));
            Assert.True(float.IsNaN(back.LastCheckpoint!.Loss));

            using var ok = await http.GetAsync("/ok");
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
            Assert.Equal("""{"loss":null,"seconds":null,"curve":[1.5,null]}""", await ok.Content.ReadAsStringAsync());
        }
        finally
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }
}
