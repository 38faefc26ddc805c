using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Akka.Configuration;
using Akka.Configuration.Hocon;
using Islands.Diffusion;
using Islands.Diffusion.Methods;
using Islands.Diffusion.Training;

namespace Islands.Hosting;

/// <summary>An island's training block (islands.training, HOCON) read as its registered method's typed config.</summary>
public static partial class IslandNodeConfig
{
    /// <summary>A registered method's job (expert:K, monolith, router, ...), with the training block read as the method's config record.</summary>
    public static TrainingJob ParseJob(string job, Config training)
    {
        var json = ToJson(training.Root);
        var options = new JsonSerializerOptions(JsonSerializerDefaults.Web)
        {
            NumberHandling = JsonNumberHandling.AllowReadingFromString,
            UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        };
        try
        {
            var (method, argument) = MethodRegistry.Default.Resolve(job);
            var read = (IMethodConfig)(json.Deserialize(method.ConfigType, options) ?? method.Defaults);
            var config = method.Configure(read, argument, key => json is JsonObject block && block.ContainsKey(key));
            Validate(config.Validate());
            return MethodRegistry.Default.JobFor(config);
        }
        catch (JsonException e)
        {
            var path = e.Path?.TrimStart('$', '.') ?? "";
            throw new ConfigException(
                path.Length == 0 ? "islands.training" : "islands.training." + string.Join('.', path.Split('.').Select(KebabCase)),
                e.Message.Contains("could not be mapped", StringComparison.Ordinal) ? "unknown setting" : e.Message.Split(" Path:")[0]);
        }
    }

    /// <summary>The training configs name their fields as the train commands' options do; a node's user wrote HOCON keys.</summary>
    private static readonly Dictionary<string, string> OptionKeys = new()
    {
        ["--data"] = "islands.training.data-directory", ["--partitions"] = "islands.training.partitions-file", ["--expert"] = "islands.job",
        ["--steps"] = "islands.training.steps", ["--batch"] = "islands.training.batch-size", ["--lr"] = "islands.training.learning-rate",
        ["--warmup"] = "islands.training.warmup-steps", ["--ema"] = "islands.training.ema-decay", ["--t-sampling"] = "islands.training.time-sampling",
        ["--checkpoint-every"] = "islands.training.checkpoint-every", ["--keep"] = "islands.training.keep-checkpoints",
        ["--precision"] = "islands.training.precision", ["--k"] = "islands.training.expert-count",
    };

    private static void Validate(IEnumerable<string> errors)
    {
        var first = errors.FirstOrDefault();
        if (first is null) return;
        var colon = first.IndexOf(':');
        var field = colon < 0 ? "" : first[..colon];
        var problem = colon < 0 ? first : first[(colon + 1)..].TrimStart();
        var key = OptionKeys.TryGetValue(field, out var mapped) ? mapped
            : field.Length > 0 && !field.StartsWith('-') ? "islands.training." + KebabCase(field) : "islands.training";
        throw new ConfigException(key, problem);
    }

    private static string KebabCase(string name)
        => string.Concat(name.Select((c, i) => char.IsUpper(c) ? (i > 0 ? "-" : "") + char.ToLowerInvariant(c) : c.ToString()));

    private static JsonNode? ToJson(HoconValue? value)
    {
        if (value is null || value.IsEmpty) return new JsonObject();
        if (value.IsObject())
        {
            var obj = new JsonObject();
            foreach (var (key, item) in value.GetObject().Items) obj[CamelCase(key)] = ToJson(item);
            return obj;
        }
        if (value.IsArray()) return new JsonArray(value.GetArray().Select(ToJson).ToArray());
        var text = value.GetString();
        return text is null or "null" ? null : JsonValue.Create(text);
    }

    private static string CamelCase(string key) =>
        string.Concat(key.Split('-').Select((part, i) => i == 0 || part.Length == 0 ? part : char.ToUpperInvariant(part[0]) + part[1..]));
}
