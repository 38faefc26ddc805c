using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using Islands.Diffusion;
using Islands.Diffusion.Methods;
using Islands.Diffusion.Training;
using Microsoft.Extensions.Configuration;

namespace Islands.Hosting.Configuration;

/// <summary>A node's training section read as its registered method's typed config (the record a run freezes as config.json).</summary>
public static class MethodConfigReader
{
    private static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        NumberHandling = JsonNumberHandling.AllowReadingFromString,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };

    /// <param name="jobKey">The key the job came from (expert:K's index is the job's argument).</param>
    /// <param name="sectionKey">The training section's key; a failure names the key below it.</param>
    public static TrainingJob Job(string job, IConfigurationSection? training, string jobKey, string sectionKey)
    {
        var json = training is null ? new JsonObject() : ToJson(training);
        try
        {
            var (method, argument) = MethodRegistry.Default.Resolve(job);
            var read = (IMethodConfig)(json.Deserialize(method.ConfigType, Options) ?? method.Defaults);
            var config = method.Configure(read, argument, key => json is JsonObject block && block.ContainsKey(key));
            var first = config.Validate().FirstOrDefault();
            if (first is not null)
            {
                var failure = NodeConfiguration.Failure(first);
                throw new ConfigException(failure.Field == "expert" ? jobKey : sectionKey + ":" + failure.Field.Replace('.', ':'),
                    failure.Message[(failure.Field.Length + 2)..]);
            }
            return MethodRegistry.Default.JobFor(config);
        }
        catch (ConfigException e) when (e.Field is "job" or "--job")
        {
            throw new ConfigException(jobKey, e.Message[(e.Field.Length + 2)..]);
        }
        catch (JsonException e)
        {
            var path = e.Path?.TrimStart('$', '.') ?? "";
            throw new ConfigException(path.Length == 0 ? sectionKey : sectionKey + ":" + path.Replace('.', ':'),
                e.Message.Contains("could not be mapped", StringComparison.Ordinal) ? "unknown setting" : e.Message.Split(" Path:")[0]);
        }
    }

    /// <summary>Configuration values are strings: numbers are read from strings, switches become booleans, indexed children arrays.</summary>
    private static JsonNode? ToJson(IConfigurationSection section)
    {
        var children = section.GetChildren().ToList();
        if (children.Count == 0)
        {
            var text = section.Value;
            if (text is null) return new JsonObject();
            if (text == "null") return null;
            return bool.TryParse(text, out var flag) ? JsonValue.Create(flag) : JsonValue.Create(text);
        }
        if (children.All(c => int.TryParse(c.Key, out _)))
            return new JsonArray([.. children.OrderBy(c => int.Parse(c.Key, System.Globalization.CultureInfo.InvariantCulture)).Select(ToJson)]);
        var obj = new JsonObject();
        foreach (var child in children) obj[child.Key] = ToJson(child);
        return obj;
    }
}
