using System.Text.Unicode;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.HttpLogging;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Net.Http.Headers;

namespace Islands.Hosting;

/// <summary>
/// What every node's HTTP front refuses before any endpoint sees it, and how it answers every error: a header value with
/// a control character is a 400, an error with no body (an unknown path, a method or media type the endpoint does not
/// take) gets a problem-details body, and the request log never carries a query string (a key sent as ?api_key= must
/// not reach the logs).
/// </summary>
public static class RequestGuards
{
    public static void AddServices(IServiceCollection services)
    {
        services.AddProblemDetails(o => o.CustomizeProblemDetails = c =>
        {
            if (c.ProblemDetails.Detail is not null) return;
            var request = c.HttpContext.Request;
            c.ProblemDetails.Detail = c.ProblemDetails.Status switch
            {
                StatusCodes.Status404NotFound => $"no endpoint at {request.Path}",
                StatusCodes.Status405MethodNotAllowed => $"{request.Method} is not allowed on {request.Path}",
                StatusCodes.Status415UnsupportedMediaType => UnsupportedMediaTypeDetail(request.ContentType),
                _ => null,
            };
        });
        // Method, path, status and duration only: no query string, no headers, no bodies.
        services.AddHttpLogging(o =>
        {
            o.LoggingFields = HttpLoggingFields.RequestMethod | HttpLoggingFields.RequestPath | HttpLoggingFields.RequestProtocol |
                HttpLoggingFields.ResponseStatusCode | HttpLoggingFields.Duration;
            o.CombineLogs = true;
        });
    }

    public static void Use(WebApplication app)
    {
        app.Use(async (http, next) =>
        {
            if (ControlCharacterHeader(http.Request.Headers) is { } name)
            {
                await Results.Problem(statusCode: StatusCodes.Status400BadRequest, title: "Malformed header",
                    detail: $"the value of header {name} holds a control character").ExecuteAsync(http);
                return;
            }
            await next(http);
        });
        app.UseStatusCodePages();
        app.UseHttpLogging();
    }

    /// <summary>
    /// The request body, read up to one byte past limit; null when it is larger. An oversized body is drained (up to
    /// Kestrel's hard cap) first, so the client reliably reads the 413 instead of a reset connection.
    /// </summary>
    public static async Task<ReadOnlyMemory<byte>?> ReadBoundedAsync(HttpRequest request, long limit, CancellationToken cancel)
    {
        if (request.ContentLength > limit) return null;
        var buffer = new MemoryStream();
        try
        {
            var chunk = new byte[8192];
            int n;
            while (buffer.Length <= limit && (n = await request.Body.ReadAsync(chunk, cancel)) > 0) buffer.Write(chunk, 0, n);
            if (buffer.Length > limit)
            {
                while (await request.Body.ReadAsync(chunk, cancel) > 0) { }
                return null;
            }
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return null;
        }
        return buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
    }

    /// <summary>Only application/json (in UTF-8, the one encoding JSON may be sent in) is a generation body.</summary>
    public static bool IsJson(string? contentType) =>
        MediaTypeHeaderValue.TryParse(contentType, out var media) &&
        media.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase) &&
        (!media.Charset.HasValue || media.Charset.Equals("utf-8", StringComparison.OrdinalIgnoreCase));

    public static IResult UnsupportedMediaType(string? contentType) =>
        Results.Problem(statusCode: StatusCodes.Status415UnsupportedMediaType, title: "Unsupported media type",
            detail: UnsupportedMediaTypeDetail(contentType));

    /// <returns>The offset of the first byte that is not well-formed UTF-8, or null when all are.</returns>
    public static int? FirstInvalidUtf8(ReadOnlySpan<byte> bytes)
    {
        if (Utf8.IsValid(bytes)) return null;
        var offset = 0;
        while (offset < bytes.Length)
        {
            var status = System.Text.Rune.DecodeFromUtf8(bytes[offset..], out _, out var consumed);
            if (status != System.Buffers.OperationStatus.Done) return offset;
            offset += consumed;
        }
        return offset;
    }

    private static string UnsupportedMediaTypeDetail(string? contentType) =>
        $"send the request body as application/json in UTF-8{(string.IsNullOrEmpty(contentType) ? " (no Content-Type was sent)" : "")}";

    private static string? ControlCharacterHeader(IHeaderDictionary headers)
    {
        foreach (var (name, values) in headers)
            foreach (var value in values)
                if (value is not null && value.Any(c => (c < ' ' && c != '\t') || c == '\u007f'))
                    return name;
        return null;
    }
}
