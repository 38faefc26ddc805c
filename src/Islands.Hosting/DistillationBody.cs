using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using Islands.Actors.Serving;
using Islands.Diffusion;
using Islands.Diffusion.Distillation;

namespace Islands.Hosting;

/// <summary>
/// Validates the JSON body of POST /v1/distillations field by field into a run's <see cref="DistillConfig"/>: every
/// invalid field is reported with its limit, unknown fields are refused, and the core's own checks (t range, switch
/// step, sources) are reported under the API's field names.
/// </summary>
public static class DistillationBody
{
    /// <summary>The API's field for each of the config's (the rest have the config's own names).</summary>
    private static readonly Dictionary<string, string> ApiField = new()
    {
        ["job"] = "mode", ["targetClass"] = "class", ["inputClass"] = "from", ["illusionClass"] = "turned",
    };

    private static readonly HashSet<string> Fields =
    [
        "task", "mode", "class", "from", "turned", "sourceClass", "degradedSource", "count", "steps", "switchStep", "guidance", "learningRate",
        "tMin", "tMax", "strategy", "seed", "checkpointEvery", "evaluate", "sdedit", "sdeditGuidance", "channels", "height", "width",
    ];

    /// <param name="MaxCount">The most images a job may hold: a step asks for two rows per image in one score query.</param>
    public sealed record Served((long C, long H, long W) Shape, (int Count, IReadOnlyList<string> Names) Classes, string Store, int MaxCount);

    public static (DistillationRequest? Request, string Hash, Dictionary<string, string[]> Errors) Validate(JsonElement root, Served served)
    {
        var errors = new Dictionary<string, string[]>();
        void Error(string field, string message) => errors.TryAdd(field, [message]);
        if (root.ValueKind != JsonValueKind.Object)
        {
            Error("body", "must be a JSON object");
            return (null, "", errors);
        }
        foreach (var p in root.EnumerateObject())
            if (!Fields.Contains(p.Name)) Error(p.Name, $"unknown field; expected one of {string.Join(", ", Fields)}");
        var defaults = new DistillConfig();
        string Text(string field, string fallback, string[] allowed)
        {
            if (!root.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
            var s = v.ValueKind == JsonValueKind.String ? v.GetString()!.ToLowerInvariant() : "";
            if (!allowed.Contains(s)) Error(field, $"must be one of {string.Join(", ", allowed)}");
            return s;
        }
        double Number(string field, double fallback, double min, double max)
        {
            if (!root.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
            if (v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out var d) && d >= min && d <= max) return d;
            Error(field, $"must be a number from {min.ToString(CultureInfo.InvariantCulture)} to {max.ToString(CultureInfo.InvariantCulture)}");
            return fallback;
        }
        int Integer(string field, int fallback, int min, int max) => (int)Math.Round(Number(field, fallback, min, max));
        bool Flag(string field, bool fallback)
        {
            if (!root.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
            if (v.ValueKind is JsonValueKind.True or JsonValueKind.False) return v.GetBoolean();
            Error(field, "must be true or false");
            return fallback;
        }
        int? Class(string field, bool required)
        {
            if (!root.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null)
            {
                if (required) Error(field, "required: a class index or name");
                return null;
            }
            var (count, names) = served.Classes;
            if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) && i >= 0 && i < count) return i;
            var index = v.ValueKind == JsonValueKind.String
                ? names.ToList().FindIndex(n => string.Equals(n, v.GetString(), StringComparison.OrdinalIgnoreCase))
                : -1;
            if (index >= 0) return index;
            Error(field, $"must be an index from 0 to {count - 1}" + (names.Count > 0 ? $" or one of: {string.Join(", ", names)}" : ""));
            return null;
        }

        var task = Text("task", "class", DistillConfig.Tasks);
        var mode = Text("mode", "sds", DistillConfig.Modes);
        var target = Class("class", required: true);
        var input = Class("from", required: task == "translate");
        var turned = Class("turned", required: task == "illusion");
        var source = Class("sourceClass", required: false);
        var steps = Integer("steps", defaults.Steps, 1, 100_000);
        foreach (var (field, actual) in new[] { ("channels", served.Shape.C), ("height", served.Shape.H), ("width", served.Shape.W) })
            if (root.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null && !(v.TryGetInt64(out var n) && n == actual))
                Error(field, $"the served experts' images are {served.Shape.C}×{served.Shape.H}×{served.Shape.W}; {field} must be {actual}");
        double[] sdedit = [];
        if (root.TryGetProperty("sdedit", out var sd) && sd.ValueKind != JsonValueKind.Null)
        {
            if (sd.ValueKind == JsonValueKind.Array && sd.EnumerateArray().All(e => e.TryGetDouble(out var x) && x is > 0 and <= 1))
                sdedit = [.. sd.EnumerateArray().Select(e => e.GetDouble())];
            else Error("sdedit", "must be an array of strengths in (0, 1]");
            if (task != "translate" && sdedit.Length > 0) Error("sdedit", "only a translation is compared with SDEdit");
        }
        var config = new DistillConfig(Job: mode, Store: served.Store, Task: task, TargetClass: target ?? 0, SourceClass: source,
            InputClass: input, IllusionClass: turned, Count: Integer("count", Math.Min(served.MaxCount, task == "class" ? 16 : 8), 1,
                served.MaxCount), Steps: steps,
            SwitchStep: Integer("switchStep", steps / 2, 0, 100_000), Guidance: Number("guidance", defaults.Guidance, 0, 200),
            LearningRate: Number("learningRate", defaults.LearningRate, 1e-6, 10), TMin: Number("tMin", defaults.TMin, 0.001, 1),
            TMax: Number("tMax", task == "translate" ? 0.5 : defaults.TMax, 0.001, 1), Seed: Integer("seed", 0, 0, int.MaxValue),
            CheckpointEvery: Integer("checkpointEvery", defaults.CheckpointEvery, 1, 100_000), DegradedSource: Flag("degradedSource", true));
        if (root.TryGetProperty("strategy", out var st) && st.ValueKind != JsonValueKind.Null)
        {
            try
            {
                var parsed = Diffusion.Routing.RoutingStrategy.Parse(st.ValueKind == JsonValueKind.String ? st.GetString()! : "");
                config = parsed.Kind is "sample" or "oracle"
                    ? throw new ConfigException("strategy", "offline only")
                    : config with { Strategy = parsed.ToString() };
            }
            catch (ConfigException)
            {
                Error("strategy", "must be top1, top2, topk:N, full or threshold:P");
            }
        }
        var evaluate = Flag("evaluate", false);
        var sdeditGuidance = Number("sdeditGuidance", 3, 0, 20);
        if (errors.Count > 0) return (null, "", errors);
        foreach (var problem in config.Validate())
        {
            var colon = problem.IndexOf(':');
            var field = colon > 0 ? problem[..colon] : "body";
            Error(ApiField.GetValueOrDefault(field, field), colon > 0 ? problem[(colon + 1)..].Trim() : problem);
        }
        if (errors.Count > 0) return (null, "", errors);
        var request = new DistillationRequest(config, evaluate, sdedit, sdeditGuidance);
        return (request, Convert.ToHexStringLower(SHA256.HashData(JsonSerializer.SerializeToUtf8Bytes(request)))[..32], errors);
    }
}
