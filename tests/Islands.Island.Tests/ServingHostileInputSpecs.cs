using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Islands.Island.Tests;

/// <summary>
/// The generation API under hostile input, through HTTP: bytes that are not UTF-8 and escapes that are not Unicode,
/// hostile JSON, media types, odd paths and methods, control characters in headers, Idempotency-Key abuse on the async
/// path, failures that must not pile up, and keys that must not reach the logs. Every error is a 4xx with a
/// problem-details body, and the node keeps serving.
/// </summary>
[Collection("islands")]
public sealed class ServingHostileInputSpecs(ServingNodeFixture fixture) : IClassFixture<ServingNodeFixture>
{
    private HttpClient Client(string? key = ServingTestStore.ApiKey) => ServingTestStore.Client(fixture.Node.Http, key);

    private static async Task<JsonElement> Problem(HttpResponseMessage response)
    {
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
    }

    private async Task StillServes()
    {
        using var http = Client();
        using var fine = await ServingTestStore.PostAsync(http, new { count = 1, steps = 2 });
        Assert.Equal(HttpStatusCode.OK, fine.StatusCode);
    }

    private static HttpContent Raw(byte[] body, string contentType = "application/json")
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        return content;
    }

    [Theory]
    [InlineData("""{"count":1,"strategy":"\ud800"}""", "strategy")]
    [InlineData("""{"count":1,"class":"\udc00abc"}""", "class")]
    [InlineData("""{"count":1,"format":"png\ud83d"}""", "format")]
    [InlineData("""{"count":1,"\ud800":1}""", "body")]
    public async Task Should_refuse_a_lone_surrogate_escape_with_400_naming_where_it_is(string body, string field)
    {
        using var http = Client();
        using var response = await http.PostAsync("/v1/generations", Raw(Encoding.ASCII.GetBytes(body)));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var problem = await Problem(response);
        Assert.Contains("surrogate", problem.GetProperty("errors").GetProperty(field)[0].GetString());
        await StillServes();
    }

    [Fact]
    public async Task Should_refuse_a_body_that_is_not_utf8_with_400_naming_the_byte()
    {
        using var http = Client();
        byte[] body = [.. Encoding.ASCII.GetBytes("""{"count":1,"format":"p"""), 0xff, 0xfe, .. Encoding.ASCII.GetBytes("\"}")];
        using var response = await http.PostAsync("/v1/generations", Raw(body));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("not valid UTF-8 (at byte 22)", (await Problem(response)).GetProperty("detail").GetString());
        await StillServes();
    }

    [Theory]
    [InlineData("""{"count":1,"count":2}""", "count", "more than once")]
    [InlineData("""{"count":1e400}""", "count", "1 to 256")]
    [InlineData("""{"seed":1.5}""", "seed", "0 to 2^53")]
    [InlineData("""{"steps":"1"}""", "steps", "1 to 200")]
    [InlineData("""null""", "body", "JSON object")]
    [InlineData("""[{"count":1}]""", "body", "JSON object")]
    public async Task Should_refuse_hostile_json_values_with_a_problem_naming_the_field(string body, string field, string says)
    {
        using var http = Client();
        using var response = await http.PostAsync("/v1/generations", Raw(Encoding.UTF8.GetBytes(body)));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(says, (await Problem(response)).GetProperty("errors").GetProperty(field)[0].GetString());
    }

    [Theory]
    [InlineData("")]
    [InlineData("{\"count\":")]
    [InlineData("{\"count\":1}}")]
    [InlineData("{'count':1}")]
    [InlineData("deep")]
    public async Task Should_refuse_malformed_or_deeply_nested_json_with_400_and_keep_serving(string body)
    {
        if (body == "deep") body = "{\"count\":" + new string('[', 200) + new string(']', 200) + "}";
        using var http = Client();
        using var response = await http.PostAsync("/v1/generations", Raw(Encoding.UTF8.GetBytes(body)));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("not valid JSON", (await Problem(response)).GetProperty("detail").GetString());
        await StillServes();
    }

    [Theory]
    [InlineData("text/plain")]
    [InlineData("application/x-www-form-urlencoded")]
    [InlineData("multipart/form-data; boundary=x")]
    [InlineData("application/jsonx")]
    [InlineData("application/json; charset=iso-8859-1")]
    [InlineData(null)]
    public async Task Should_answer_every_unsupported_media_type_with_415_and_a_problem_body(string? contentType)
    {
        using var http = Client();
        var content = new ByteArrayContent(Encoding.UTF8.GetBytes("""{"count":1}"""));
        if (contentType is not null) content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        using var response = await http.PostAsync("/v1/generations", content);
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, response.StatusCode);
        Assert.Contains("application/json", (await Problem(response)).GetProperty("detail").GetString());
    }

    [Theory]
    [InlineData("GET", "/v1/nothing-here", HttpStatusCode.NotFound, "no endpoint at /v1/nothing-here")]
    [InlineData("DELETE", "/v1/generations", HttpStatusCode.MethodNotAllowed, "DELETE is not allowed")]
    [InlineData("PUT", "/v1/experts", HttpStatusCode.MethodNotAllowed, "PUT is not allowed")]
    [InlineData("GET", "/v1/generations/..%2F..%2Fetc%2Fpasswd", HttpStatusCode.NotFound, "not a generation id")]
    [InlineData("GET", "/v1/generations/knotanid?format=gif", HttpStatusCode.NotFound, "not a generation id")]
    public async Task Should_answer_odd_paths_and_methods_with_a_problem_body(string method, string path, HttpStatusCode status, string says)
    {
        using var http = Client();
        using var response = await http.SendAsync(new HttpRequestMessage(new HttpMethod(method), path));
        Assert.Equal(status, response.StatusCode);
        Assert.Contains(says, (await Problem(response)).GetProperty("detail").GetString());
    }

    [Theory]
    [InlineData("X-Request-Note", "a\u0001b")]
    [InlineData("Idempotency-Key", "key\u0007bell")]
    [InlineData("Accept", "image/png\u001f")]
    [InlineData("Authorization", "Bearer " + ServingTestStore.ApiKey + "\u007f")]
    public async Task Should_refuse_a_header_value_with_a_control_character_with_400(string header, string value)
    {
        var address = new Uri(fixture.Node.Http);
        var authorization = header == "Authorization" ? "" : $"Authorization: Bearer {ServingTestStore.ApiKey}\r\n";
        const string body = """{"count":1,"steps":2}""";
        var request = $"POST /v1/generations HTTP/1.1\r\nHost: {address.Authority}\r\n{authorization}{header}: {value}\r\n" +
            $"Content-Type: application/json\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n{body}";
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(address.Host, address.Port);
        await using var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.Latin1.GetBytes(request));
        var answer = await new StreamReader(stream, Encoding.Latin1).ReadToEndAsync();
        Assert.StartsWith("HTTP/1.1 400", answer);
        Assert.Contains("application/problem+json", answer);
        Assert.Contains($"header {header} holds a control character", answer);
        Assert.DoesNotContain(value, answer);
        await StillServes();
    }

    [Fact]
    public async Task Should_refuse_an_idempotency_key_reused_by_an_async_request_with_another_body_and_keep_the_first_result()
    {
        using var http = Client();
        // After a synchronous request under the key.
        var syncKey = Guid.NewGuid().ToString("N");
        using var first = await ServingTestStore.PostAsync(http, new { count = 1, steps = 2, seed = 1, format = "json" }, syncKey);
        Assert.Equal(HttpStatusCode.OK, first.StatusCode);
        var firstImages = JsonDocument.Parse(await first.Content.ReadAsStringAsync()).RootElement.GetProperty("images").ToString();
        using var reusedAfterSync = await ServingTestStore.PostAsync(http, new { count = 1, steps = 2, seed = 2, async = true }, syncKey);
        Assert.Equal(HttpStatusCode.UnprocessableEntity, reusedAfterSync.StatusCode);
        Assert.Contains("Idempotency-Key", (await Problem(reusedAfterSync)).GetProperty("detail").GetString());

        // After an asynchronous request under the key, while it runs and once it is done.
        var asyncKey = Guid.NewGuid().ToString("N");
        var body = new { count = 2, steps = 30, seed = 5, async = true };
        using var accepted = await ServingTestStore.PostAsync(http, body, asyncKey);
        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
        var id = JsonDocument.Parse(await accepted.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString()!;
        using var reusedWhileRunning = await ServingTestStore.PostAsync(http, body with { seed = 6 }, asyncKey);
        Assert.Equal(HttpStatusCode.UnprocessableEntity, reusedWhileRunning.StatusCode);
        using var retried = await ServingTestStore.PostAsync(http, body, asyncKey);
        Assert.Equal(HttpStatusCode.Accepted, retried.StatusCode);

        JsonElement result = default;
        await IslandTestEnvironment.Eventually(async () =>
        {
            using var get = await http.GetAsync($"/v1/generations/{id}");
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
            result = JsonDocument.Parse(await get.Content.ReadAsStringAsync()).RootElement.Clone();
            return result.TryGetProperty("images", out _);
        }, TimeSpan.FromSeconds(90), $"async generation {id} finishes");
        Assert.Equal(5, result.GetProperty("seed").GetInt64());
        using var reusedWhenDone = await ServingTestStore.PostAsync(http, body with { seed = 7 }, asyncKey);
        Assert.Equal(HttpStatusCode.UnprocessableEntity, reusedWhenDone.StatusCode);

        // The sync key's result is still the first request's.
        using var again = await ServingTestStore.PostAsync(http, new { count = 1, steps = 2, seed = 1, format = "json" }, syncKey);
        Assert.Equal(firstImages, JsonDocument.Parse(await again.Content.ReadAsStringAsync()).RootElement.GetProperty("images").ToString());
    }

    [Fact]
    public async Task Should_forget_a_failed_async_generation_after_the_failed_retention()
    {
        // A deadline no generation of 200 steps meets, so every async request fails (504), and failures kept 3 s.
        await using var node = await LocalServing.StartAsync(1, fixture.Store,
            "requestTimeout=\"300ms\"; progressTimeout=\"2s\"; http:failedRetention=\"3s\"");
        using var http = ServingTestStore.Client(node.Nodes[0].Http);
        using var accepted = await ServingTestStore.PostAsync(http, new { count = 64, steps = 200, async = true });
        Assert.Equal(HttpStatusCode.Accepted, accepted.StatusCode);
        var id = JsonDocument.Parse(await accepted.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString()!;
        await IslandTestEnvironment.Eventually(async () =>
        {
            using var get = await http.GetAsync($"/v1/generations/{id}");
            return get.StatusCode == HttpStatusCode.GatewayTimeout;
        }, TimeSpan.FromSeconds(60), $"async generation {id} fails on its deadline");
        await IslandTestEnvironment.Eventually(async () =>
        {
            using var get = await http.GetAsync($"/v1/generations/{id}");
            Assert.NotEqual(HttpStatusCode.OK, get.StatusCode);
            return get.StatusCode == HttpStatusCode.NotFound;
        }, TimeSpan.FromSeconds(30), $"failed generation {id} is forgotten after 3 s");
    }

    [Fact]
    public async Task Should_never_write_a_key_sent_in_the_query_string_to_the_log_even_at_information()
    {
        var log = new CapturedLog(LogLevel.Information);
        // As an operator who wants request logs would: Microsoft.AspNetCore lowered to information.
        await using var node = await LocalServing.StartAsync(1, fixture.Store, logging: l =>
        {
            l.SetMinimumLevel(LogLevel.Information);
            l.AddFilter("Microsoft.AspNetCore", LogLevel.Information);
            l.AddProvider(log);
        });
        const string secret = "query-secret-0123456789abcdef";
        using var anonymous = ServingTestStore.Client(node.Nodes[0].Http, key: null);
        using var refused = await anonymous.GetAsync($"/v1/experts?api_key={secret}");
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        using var http = ServingTestStore.Client(node.Nodes[0].Http);
        using var served = await http.GetAsync($"/v1/experts?token={secret}");
        Assert.Equal(HttpStatusCode.OK, served.StatusCode);
        await IslandTestEnvironment.Eventually(() => Task.FromResult(log.Lines.Count(l => l.Contains("/v1/experts", StringComparison.Ordinal)) >= 2),
            TimeSpan.FromSeconds(10), "both requests are in the request log");
        Assert.DoesNotContain(log.Lines, l => l.Contains(secret, StringComparison.Ordinal));
    }
}
