using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Http.Resilience;
using Polly;

namespace Islands.Hosting;

/// <summary>
/// The one HTTP client of the generation API (used by <c>islands generate</c>, the demo and <c>bench serve</c>): an
/// HttpClient from IHttpClientFactory with Microsoft.Extensions.Http.Resilience's standard pipeline (retries with
/// exponential back-off and jitter on 408, 429, 5xx and transport errors, a timeout per attempt and in all, a circuit
/// breaker). Every POST carries an Idempotency-Key, so a retried request is the same generation: the server joins it or
/// answers from its stored result.
/// </summary>
public sealed class GenerationClient : IDisposable
{
    private const string ClientName = "islands-generations";
    private readonly ServiceProvider services;
    private readonly HttpClient http;

    private GenerationClient(ServiceProvider services)
    {
        this.services = services;
        http = services.GetRequiredService<IHttpClientFactory>().CreateClient(ClientName);
    }

    public Uri BaseAddress => http.BaseAddress!;

    /// <param name="attemptTimeout">How long one attempt may take (a generation is answered when it is done).</param>
    /// <param name="retries">Retries after the first attempt (0: none, e.g. for a benchmark that counts failures).</param>
    /// <param name="log">Told of every retry: the status or error, and the delay.</param>
    public static GenerationClient Create(string baseUrl, string? apiKey, TimeSpan attemptTimeout, int retries = 4, Action<string>? log = null)
    {
        if (!Uri.TryCreate(baseUrl.TrimEnd('/') + "/", UriKind.Absolute, out var address) || address.Scheme is not ("http" or "https"))
            throw new Diffusion.ConfigException("--url", $"'{baseUrl}' is not an http:// or https:// address");
        var services = new ServiceCollection();
        services.AddHttpClient(ClientName, client =>
            {
                client.BaseAddress = address;
                // The resilience pipeline's timeouts bound each attempt and the whole request instead.
                client.Timeout = Timeout.InfiniteTimeSpan;
                if (!string.IsNullOrEmpty(apiKey)) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
            })
            .AddStandardResilienceHandler(o =>
            {
                o.AttemptTimeout.Timeout = attemptTimeout;
                o.Retry.ShouldHandle = retries > 0 ? o.Retry.ShouldHandle : _ => PredicateResult.False();
                o.Retry.MaxRetryAttempts = Math.Max(1, retries);
                o.Retry.Delay = TimeSpan.FromSeconds(1);
                o.Retry.BackoffType = DelayBackoffType.Exponential;
                o.Retry.UseJitter = true;
                o.Retry.OnRetry = args =>
                {
                    var what = args.Outcome.Result is { } r ? $"{(int)r.StatusCode} {r.ReasonPhrase}" : args.Outcome.Exception?.Message;
                    log?.Invoke($"{address}v1/generations: {what}; retrying in {args.RetryDelay.TotalSeconds:0.0} s");
                    return default;
                };
                o.TotalRequestTimeout.Timeout = attemptTimeout * (Math.Max(1, retries) + 1) + TimeSpan.FromSeconds(30);
                o.CircuitBreaker.SamplingDuration = attemptTimeout * 2 + TimeSpan.FromSeconds(1);
            });
        return new GenerationClient(services.BuildServiceProvider());
    }

    /// <summary>POST /v1/generations; the answer's status and body, whatever the status (the caller decides what an error means).</summary>
    public Task<(HttpStatusCode Status, string? Reason, byte[] Body)> GenerateAsync(object body, string idempotencyKey, CancellationToken cancel) =>
        SendAsync(HttpMethod.Post, "v1/generations", body, idempotencyKey, cancel);

    /// <summary>Any request of the API (a relative path); the answer's status and body, whatever the status.</summary>
    public async Task<(HttpStatusCode Status, string? Reason, byte[] Body)> SendAsync(HttpMethod method, string path, object? body,
        string? idempotencyKey, CancellationToken cancel)
    {
        using var request = new HttpRequestMessage(method, path) { Content = body is null ? null : JsonContent.Create(body) };
        if (idempotencyKey is not null) request.Headers.Add("Idempotency-Key", idempotencyKey);
        try
        {
            using var response = await http.SendAsync(request, cancel);
            return (response.StatusCode, response.ReasonPhrase, await response.Content.ReadAsByteArrayAsync(cancel));
        }
        catch (Exception e) when (e is HttpRequestException or Polly.Timeout.TimeoutRejectedException or Polly.CircuitBreaker.BrokenCircuitException)
        {
            throw new Diffusion.IslandsException($"{BaseAddress}{path}: {e.Message}");
        }
    }

    /// <summary>A problem-details answer in one line: each invalid field with its message, or the detail.</summary>
    public static string Describe(byte[] body)
    {
        var text = System.Text.Encoding.UTF8.GetString(body);
        try
        {
            using var problem = System.Text.Json.JsonDocument.Parse(text);
            var root = problem.RootElement;
            return root.TryGetProperty("errors", out var errors)
                ? string.Join("; ", errors.EnumerateObject().Select(p
                    => $"{p.Name}: {string.Join(" ", p.Value.EnumerateArray().Select(v => v.GetString()))}"))
                : root.TryGetProperty("detail", out var d) ? d.GetString() ?? text : text;
        }
        catch (System.Text.Json.JsonException)
        {
            return text;
        }
    }

    public void Dispose() => services.Dispose();
}
