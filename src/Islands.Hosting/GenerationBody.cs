using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Islands.Actors.Serving;
using Islands.Diffusion;
using Islands.Diffusion.Routing;
using Islands.Diffusion.Sampling;

namespace Islands.Hosting;

/// <summary>The JSON body of POST /v1/generations, as documented in the OpenAPI description.</summary>
/// <param name="Class">A class index or name; absent or null for unconditional images.</param>
/// <param name="Sampler">The ODE stepper: euler (one evaluation a step) or heun (two, except on the last step).</param>
public sealed record GenerationBody(int? Count = 16, JsonElement? Class = null, int? Steps = 20, double? Cfg = 1.0, string? Strategy = "top1",
    long? Seed = null, string? Format = "png", bool? Async = false, string? Sampler = "euler");

/// <summary>A validated body: what to compute, and how to answer.</summary>
public sealed record ValidGeneration(GenerationRequest Request, string Format, bool Async, string RequestHash);

/// <summary>
/// Validates a generation body field by field, so that every invalid field is reported with its limit (problem details'
/// "errors" keyed by field), and unknown fields are refused rather than silently ignored.
/// </summary>
public static class GenerationBodyValidator
{
    public const int MaxSteps = 200;
    public const double MaxCfg = 20;
    private static readonly HashSet<string> Fields = ["count", "class", "steps", "cfg", "strategy", "sampler", "seed", "format", "async"];

    /// <param name="seedFromKey">Seed to use when the body has none: derived from the Idempotency-Key, so a retry is the same request.</param>
    public static (ValidGeneration? Valid, Dictionary<string, string[]> Errors) Validate(JsonElement root, int classCount,
        IReadOnlyList<string> classNames, long? seedFromKey)
    {
        var errors = new Dictionary<string, string[]>();
        void Error(string field, string message) => errors[field] = [message];
        if (root.ValueKind != JsonValueKind.Object)
        {
            Error("body", "must be a JSON object");
            return (null, errors);
        }
        if (UndecodableString(root, "") is { } undecodable)
        {
            Error(undecodable, undecodable == "body"
                ? "a property name holds an unpaired surrogate escape (\\ud800 to \\udfff alone), which is not Unicode text"
                : "must be Unicode text: it holds an unpaired surrogate escape (\\ud800 to \\udfff alone)");
            return (null, errors);
        }
        var seen = new HashSet<string>();
        foreach (var property in root.EnumerateObject())
        {
            if (!Fields.Contains(property.Name)) Error(property.Name, $"unknown field; expected one of {string.Join(", ", Fields)}");
            else if (!seen.Add(property.Name)) Error(property.Name, "given more than once");
        }

        var count = Integer(root, "count", 16, 1, ServingSettings.MaxImagesPerRequest, Error);
        var steps = Integer(root, "steps", 20, 1, MaxSteps, Error);
        double cfg = 1;
        if (root.TryGetProperty("cfg", out var c) && c.ValueKind != JsonValueKind.Null)
        {
            if (c.ValueKind != JsonValueKind.Number || !c.TryGetDouble(out cfg) || cfg is < 0 or > MaxCfg || double.IsNaN(cfg))
                Error("cfg", $"must be a number from 0 to {MaxCfg}");
        }
        var strategy = "top1";
        if (root.TryGetProperty("strategy", out var s) && s.ValueKind != JsonValueKind.Null)
        {
            try
            {
                strategy = s.ValueKind == JsonValueKind.String
                    ? RoutingStrategy.Parse(s.GetString()!).ToString()
                    : throw new ConfigException("strategy", "not a string");
                if (strategy.StartsWith("sample", StringComparison.Ordinal) || strategy.StartsWith("oracle", StringComparison.Ordinal))
                    Error("strategy", "must be top1, top2, topk:N, full or threshold:P (sample and oracle are for offline evaluation)");
            }
            catch (ConfigException)
            {
                Error("strategy", "must be top1, top2, topk:N (N ≥ 1), full or threshold:P (0 < P ≤ 1)");
            }
        }
        string? sampler = null;
        if (root.TryGetProperty("sampler", out var m) && m.ValueKind != JsonValueKind.Null)
        {
            sampler = m.ValueKind == JsonValueKind.String ? m.GetString()!.ToLowerInvariant() : "";
            if (!FlowStep.IsKnown(sampler)) Error("sampler", $"must be {FlowStep.Euler} or {FlowStep.Heun}");
            // Euler is the default: stated or not, it is the same request (and the same Idempotency-Key digest).
            else if (sampler == FlowStep.Euler) sampler = null;
        }
        long? cls = null;
        if (root.TryGetProperty("class", out var k) && k.ValueKind != JsonValueKind.Null)
        {
            if (k.ValueKind == JsonValueKind.Number && k.TryGetInt64(out var index) && index >= 0 && index < classCount) cls = index;
            else if (k.ValueKind == JsonValueKind.String
                && classNames.Select((n, i) => (n, i))
                    .FirstOrDefault(p => string.Equals(p.n, k.GetString(), StringComparison.OrdinalIgnoreCase)) is { n: not null } named)
                cls = named.i;
            else Error("class", classNames.Count > 0
                ? $"must be an index from 0 to {classCount - 1} or one of: {string.Join(", ", classNames)}"
                : $"must be an index from 0 to {classCount - 1}");
        }
        long seed = seedFromKey ?? RandomNumberGenerator.GetInt32(int.MaxValue);
        if (root.TryGetProperty("seed", out var sd) && sd.ValueKind != JsonValueKind.Null)
        {
            if (sd.ValueKind != JsonValueKind.Number || !sd.TryGetInt64(out seed) || seed < 0 || seed > (1L << 53))
                Error("seed", "must be an integer from 0 to 2^53");
        }
        var format = "png";
        if (root.TryGetProperty("format", out var f) && f.ValueKind != JsonValueKind.Null)
        {
            format = f.ValueKind == JsonValueKind.String ? f.GetString()!.ToLowerInvariant() : "";
            if (format is not ("png" or "json")) Error("format", "must be png (one grid) or json (base64 images, routing trace and timings)");
        }
        var async = false;
        if (root.TryGetProperty("async", out var a) && a.ValueKind != JsonValueKind.Null)
        {
            if (a.ValueKind is JsonValueKind.True or JsonValueKind.False) async = a.GetBoolean();
            else Error("async", "must be true or false");
        }
        if (errors.Count > 0) return (null, errors);
        var request = new GenerationRequest(count, cls is null ? null : Enumerable.Repeat(cls.Value, count).ToArray(), steps, cfg, strategy, seed,
            sampler);
        return (new ValidGeneration(request, format, async, Hash(request)), errors);
    }

    /// <returns>The field holding a string that cannot be decoded to .NET text (an escaped lone surrogate such as
    /// "\ud800"), "body" when it is a property name, or null when every string decodes.</returns>
    private static string? UndecodableString(JsonElement element, string path)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    string name;
                    try
                    {
                        name = property.Name;
                    }
                    catch (InvalidOperationException)
                    {
                        return path.Length == 0 ? "body" : path;
                    }
                    if (UndecodableString(property.Value, path.Length == 0 ? name : $"{path}.{name}") is { } inner) return inner;
                }
                return null;
            case JsonValueKind.Array:
                var index = 0;
                foreach (var item in element.EnumerateArray())
                    if (UndecodableString(item, $"{path}[{index++}]") is { } inner) return inner;
                return null;
            case JsonValueKind.String:
                try
                {
                    element.GetString();
                    return null;
                }
                catch (InvalidOperationException)
                {
                    return path;
                }
            default:
                return null;
        }
    }

    private static int Integer(JsonElement root, string field, int fallback, int min, int max, Action<string, string> error)
    {
        if (!root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null) return fallback;
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var n) && n >= min && n <= max) return n;
        error(field, $"must be an integer from {min} to {max}");
        return fallback;
    }

    /// <summary>The request's digest: a retried Idempotency-Key must carry the same request.</summary>
    public static string Hash(GenerationRequest request) =>
        Convert.ToHexStringLower(SHA256.HashData(JsonSerializer.SerializeToUtf8Bytes(request)))[..32];

    /// <summary>The generation id for an Idempotency-Key, scoped to the caller's key so two clients never share one.</summary>
    public static string IdFor(string keyId, string idempotencyKey) =>
        "k" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(keyId + "\n" + idempotencyKey)))[..32];

    public static long SeedFor(string id) => long.Parse(id[1..12], NumberStyles.HexNumber, CultureInfo.InvariantCulture) & int.MaxValue;
}
