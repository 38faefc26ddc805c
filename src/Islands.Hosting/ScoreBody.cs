using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Islands.Actors.Serving;
using Islands.Diffusion;
using Islands.Diffusion.Routing;
using Islands.Diffusion.Serving;
using Microsoft.AspNetCore.Http;

namespace Islands.Hosting;

/// <summary>What the served experts accept: their images' shape, classes (and degraded classes), and the rows a query may hold.</summary>
public sealed record ScoreLimits((long C, long H, long W) Shape, (int Count, IReadOnlyList<string> Names) Classes, int MaxRows,
    int? DegradedClassCount);

/// <summary>
/// A score query as clients send it to POST /v1/scores, in one of two forms: JSON (x as a flat array of numbers, the rows'
/// C·H·W values one after another) or raw float32 (Content-Type application/octet-stream, little-endian, with the other
/// fields in the query string). t, class and cfg are one value for every row or one per row (comma-separated in a query);
/// class is an index, a name, "degraded:C" (when the experts learned the degraded condition), or null / -1 for
/// unconditional; cfg defaults to 1 (the unguided prediction); strategy to top1.
/// </summary>
public static class ScoreBody
{
    private static readonly HashSet<string> Fields = ["x", "t", "class", "cfg", "strategy"];

    /// <summary>The largest body for a shape: every row's values, as raw float32 or as JSON numbers (at most 24 characters each).</summary>
    public static long MaxBytes(ScoreLimits limits, bool raw) =>
        limits.MaxRows * limits.Shape.C * limits.Shape.H * limits.Shape.W * (raw ? 4 : 24) + 65536;

    public static (ScoreQuery? Query, Dictionary<string, string[]> Errors) FromJson(JsonElement root, ScoreLimits limits)
    {
        var errors = new Dictionary<string, string[]>();
        if (root.ValueKind != JsonValueKind.Object)
        {
            errors["body"] = ["must be a JSON object"];
            return (null, errors);
        }
        foreach (var property in root.EnumerateObject())
            if (!Fields.Contains(property.Name)) errors[property.Name] = [$"unknown field; expected one of {string.Join(", ", Fields)}"];
        float[] x = [];
        if (!root.TryGetProperty("x", out var xs) || xs.ValueKind != JsonValueKind.Array) errors["x"] = ["required: an array of numbers"];
        else
        {
            x = new float[xs.GetArrayLength()];
            var i = 0;
            foreach (var v in xs.EnumerateArray())
            {
                if (v.ValueKind != JsonValueKind.Number || !v.TryGetSingle(out x[i]) || !float.IsFinite(x[i]))
                {
                    errors["x"] = [$"value {i} is not a finite number"];
                    break;
                }
                i++;
            }
        }
        List<string?> Values(string field) => root.TryGetProperty(field, out var v) ? v.ValueKind switch
        {
            JsonValueKind.Array => [.. v.EnumerateArray().Select(Text)],
            _ => [Text(v)],
        } : [];
        return Build(MemoryMarshal.AsBytes(x.AsSpan()).ToArray(), Values("t"), Values("class"), Values("cfg"),
            root.TryGetProperty("strategy", out var s) ? Text(s) : null, limits, errors);
    }

    public static (ScoreQuery? Query, Dictionary<string, string[]> Errors) FromRaw(ReadOnlyMemory<byte> body, IQueryCollection query,
        ScoreLimits limits)
    {
        var errors = new Dictionary<string, string[]>();
        foreach (var key in query.Keys)
            if (!Fields.Contains(key) || key == "x") errors[key] = ["unknown query parameter; expected t, class, cfg or strategy"];
        List<string?> Values(string field) => query.TryGetValue(field, out var v)
            ? [.. v.SelectMany(s => (s ?? "").Split(',')).Select(s => (string?)s.Trim())] : [];
        var x = body.ToArray();
        if (x.Length % sizeof(float) == 0)
        {
            var floats = MemoryMarshal.Cast<byte, float>(x);
            for (var i = 0; i < floats.Length; i++)
                if (!float.IsFinite(floats[i]))
                {
                    errors["x"] = [$"value {i} is not a finite number"];
                    break;
                }
        }
        return Build(x, Values("t"), Values("class"), Values("cfg"), query["strategy"].FirstOrDefault(), limits, errors);
    }

    private static string? Text(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.Null => null,
        JsonValueKind.String => v.GetString(),
        _ => v.GetRawText(),
    };

    private static (ScoreQuery?, Dictionary<string, string[]>) Build(byte[] x, List<string?> t, List<string?> cls, List<string?> cfg,
        string? strategy, ScoreLimits limits, Dictionary<string, string[]> errors)
    {
        var (shape, classes, maxRows) = (limits.Shape, limits.Classes, limits.MaxRows);
        var plane = shape.C * shape.H * shape.W;
        var rows = (int)(x.Length / sizeof(float) / plane);
        if (!errors.ContainsKey("x") && (x.Length == 0 || x.Length % (plane * sizeof(float)) != 0 || rows > maxRows))
            errors["x"] = [$"{x.Length / sizeof(float)} values are not 1 to {maxRows} images of {shape.C}×{shape.H}×{shape.W} " +
                $"({plane} values each)"];
        rows = Math.Max(rows, 1);
        static float? Number(string? s, float min, float max) =>
            float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && float.IsFinite(v) && v >= min && v <= max ? v : null;
        var times = PerRow<float>("t", t, rows, null, s => Number(s, 0, 1), "a time in [0, 1]", errors);
        var scales = PerRow<float>("cfg", cfg, rows, 1f, s => Number(s, 0, 200), "a guidance scale from 0 to 200", errors);
        var names = (classes.Names.Count > 0 ? $" or one of: {string.Join(", ", classes.Names)}" : "") +
            (limits.DegradedClassCount is null ? "" : ", or degraded:C for the degraded condition of class C");
        long? Label(string? s)
        {
            if (s is null or "-1" or "null") return -1;
            if (s.StartsWith("degraded:", StringComparison.OrdinalIgnoreCase))
                return limits.DegradedClassCount is { } d && Label(s["degraded:".Length..]) is { } c and >= 0 ? d + 1 + c : null;
            if (long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var k)) return k < classes.Count ? k : null;
            var index = classes.Names.ToList().FindIndex(n => string.Equals(n, s, StringComparison.OrdinalIgnoreCase));
            return index >= 0 ? index : null;
        }
        var labels = PerRow<long>("class", cls, rows, -1, Label, $"null or -1 (unconditional), an index from 0 to {classes.Count - 1}{names}",
            errors, nullable: true);
        var routing = "top1";
        if (strategy is not null)
        {
            try
            {
                var parsed = RoutingStrategy.Parse(strategy);
                routing = parsed.Kind is "sample" or "oracle" ? throw new ConfigException("strategy", "offline only") : parsed.ToString();
            }
            catch (ConfigException)
            {
                errors["strategy"] = ["must be top1, top2, topk:N, full or threshold:P"];
            }
        }
        if (errors.Count > 0) return (null, errors);
        return (new ScoreQuery("s" + Guid.NewGuid().ToString("N"), ServingSettings.DefaultEnsemble, times, labels, scales, routing,
            ServingTelemetry.CurrentTraceParent()) { Payload = x }, errors);
    }

    /// <summary>One value for every row, or one per row; absent is the fallback (an error when there is none).</summary>
    private static T[] PerRow<T>(string field, List<string?> values, int rows, T? fallback, Func<string?, T?> parse, string what,
        Dictionary<string, string[]> errors, bool nullable = false) where T : struct
    {
        if (values.Count == 0)
        {
            if (fallback is { } f) return Enumerable.Repeat(f, rows).ToArray();
            errors[field] = [$"required: {what}, or one per row"];
            return [];
        }
        if (values.Count != 1 && values.Count != rows)
        {
            errors[field] = [$"{values.Count} values for {rows} rows: give one, or one per row"];
            return [];
        }
        var parsed = new T[values.Count];
        for (var i = 0; i < values.Count; i++)
        {
            if ((values[i] is null && !nullable) || parse(values[i]) is not { } v)
            {
                errors[field] = [$"'{values[i] ?? "null"}' must be {what}"];
                return [];
            }
            parsed[i] = v;
        }
        return values.Count == 1 ? Enumerable.Repeat(parsed[0], rows).ToArray() : parsed;
    }
}
