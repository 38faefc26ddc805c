using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Islands.Diffusion.Distillation;
using static TorchSharp.torch;

namespace Islands.Island.Tests;

/// <summary>POST /v1/scores as a client sees it: the served routed velocity equals the offline ensemble's, in JSON and raw
/// float32, for classes, the unconditional and the degraded condition; every bad field is a 400 naming it.</summary>
[Collection("islands")]
public sealed class ScoreApiSpecs(ServingNodeFixture fixture) : IClassFixture<ServingNodeFixture>
{
    private const int Rows = 4;
    private const int Plane = 28 * 28;

    private HttpClient Client() => ServingTestStore.Client(fixture.Node.Http);

    private static float[] Points(int seed)
    {
        using var generator = new Generator((ulong)seed);
        using var x = randn([Rows, 1, 28, 28], generator: generator);
        return x.data<float>().ToArray();
    }

    /// <summary>The offline ensemble's routed velocity at the same points (one t for every row).</summary>
    private static float[] Offline(string store, float[] points, double t, long[] classes, double cfg)
    {
        using var prior = EnsemblePrior.Load(store, "top1");
        using var x = tensor(points).view(Rows, 1, 28, 28);
        using var labels = tensor(classes);
        using var _ = no_grad();
        using var v = prior.Field(cfg)(x, t, labels, 0);
        return v.contiguous().data<float>().ToArray();
    }

    private static void AssertClose(float[] expected, float[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        Assert.All(actual, v => Assert.True(float.IsFinite(v), $"{what}: a served velocity is not finite"));
        var worst = expected.Zip(actual, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(worst <= 1e-4, $"{what}: served velocities differ from offline ones by up to {worst}");
        Assert.True(actual.Max() - actual.Min() > 0.5, $"{what}: the served velocity is flat ({actual.Min()}..{actual.Max()})");
    }

    [Fact]
    public async Task Should_answer_the_offline_ensembles_routed_velocity_in_json_and_raw_float32_for_classes_unconditional_and_degraded()
    {
        var store = await ServingTestStore.StoreAsync();
        using var http = Client();
        var x = Points(5);
        using var json = await http.PostAsJsonAsync("/v1/scores", new { x, t = 0.6, @class = new object?[] { 7, "Trouser", null, "degraded:Sneaker" }, cfg = 2.5 });
        Assert.Equal(HttpStatusCode.OK, json.StatusCode);
        var body = JsonDocument.Parse(await json.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(Rows, body.GetProperty("count").GetInt32());
        Assert.Equal(Rows, body.GetProperty("routing").GetArrayLength());
        Assert.Contains(body.GetProperty("checkpoints").EnumerateArray(), c => c.GetProperty("job").GetString() == "router");
        var served = body.GetProperty("velocity").EnumerateArray().Select(v => v.GetSingle()).ToArray();
        // Sneaker is class 7; its degraded condition is label 10 + 1 + 7 for experts of ten classes.
        AssertClose(Offline(store, x, 0.6, [7, 1, -1, 18], 2.5), served, "json");

        var raw = new ByteArrayContent(MemoryMarshal.AsBytes(x.AsSpan()).ToArray());
        raw.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/scores?t=0.6&class=7,Trouser,-1,degraded:7&cfg=2.5") { Content = raw };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/octet-stream"));
        using var answer = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.Equal("4,1,28,28", answer.Headers.GetValues("X-Islands-Shape").Single());
        var bytes = await answer.Content.ReadAsByteArrayAsync();
        Assert.Equal(served, MemoryMarshal.Cast<byte, float>(bytes).ToArray());

        // Per-row times: each row equals the offline velocity at its own t.
        using var perRow = await http.PostAsJsonAsync("/v1/scores", new { x, t = new[] { 0.1, 0.9, 0.1, 0.9 }, @class = 3 });
        Assert.Equal(HttpStatusCode.OK, perRow.StatusCode);
        var rows = JsonDocument.Parse(await perRow.Content.ReadAsStringAsync()).RootElement.GetProperty("velocity").EnumerateArray()
            .Select(v => v.GetSingle()).ToArray();
        var early = Offline(store, x, 0.1, [3, 3, 3, 3], 1);
        var late = Offline(store, x, 0.9, [3, 3, 3, 3], 1);
        var expected = Enumerable.Range(0, Rows).SelectMany(r => (r % 2 == 0 ? early : late).Skip(r * Plane).Take(Plane)).ToArray();
        AssertClose(expected, rows, "per-row t");
    }

    [Theory]
    [InlineData("""{"t":0.5}""", "x", "required")]
    [InlineData("""{"x":[0.1,0.2,0.3],"t":0.5}""", "x", "784 values each")]
    [InlineData("""{"x":[0.1,"a"],"t":0.5}""", "x", "not a finite number")]
    [InlineData("""{"x":X,"t":1.5}""", "t", "[0, 1]")]
    [InlineData("""{"x":X}""", "t", "required")]
    [InlineData("""{"x":X,"t":[0.1,0.2,0.3]}""", "t", "3 values for 4 rows")]
    [InlineData("""{"x":X,"t":0.5,"cfg":-1}""", "cfg", "0 to 200")]
    [InlineData("""{"x":X,"t":0.5,"class":10}""", "class", "0 to 9")]
    [InlineData("""{"x":X,"t":0.5,"class":"degraded:Spaceship"}""", "class", "degraded:C")]
    [InlineData("""{"x":X,"t":0.5,"strategy":"sample"}""", "strategy", "top1")]
    [InlineData("""{"x":X,"t":0.5,"colour":"red"}""", "colour", "unknown field")]
    public async Task Should_refuse_every_invalid_field_of_a_score_query_with_a_problem_naming_it(string body, string field, string limit)
    {
        using var http = Client();
        var points = string.Join(",", Points(1).Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture)));
        using var response = await http.PostAsync("/v1/scores", new StringContent(body.Replace("X", $"[{points}]"), Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        var messages = problem.GetProperty("errors").GetProperty(field).EnumerateArray().Select(m => m.GetString()!).ToList();
        Assert.Contains(messages, m => m.Contains(limit, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Should_refuse_a_raw_query_with_a_bad_parameter_or_a_non_finite_value()
    {
        using var http = Client();
        var x = Points(2);
        x[5] = float.NaN;
        foreach (var (query, field) in new[] { ("t=0.5", "x"), ("t=abc", "t"), ("t=0.5&seed=3", "seed") })
        {
            var values = query == "t=0.5" ? x : Points(2);
            var raw = new ByteArrayContent(MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
            raw.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            using var response = await http.PostAsync("/v1/scores?" + query, raw);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
            Assert.True(problem.GetProperty("errors").TryGetProperty(field, out _), $"{query}: {problem}");
        }
    }
}
