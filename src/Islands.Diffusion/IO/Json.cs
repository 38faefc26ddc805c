using System.Text.Json;
using System.Text.Json.Serialization;

namespace Islands.Diffusion.IO;

/// <summary>
/// One set of JSON options for every file Islands writes: camelCase, enums as strings, indented, and a non-finite number
/// written as <c>null</c> (<see cref="NonFiniteAsNullConverter"/>), so no output ever fails, or lies, because a loss went NaN.
/// </summary>
public static class Json
{
    public static readonly JsonSerializerOptions Options = WithFiniteNumbers(new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
    });

    public static readonly JsonSerializerOptions Compact = new(Options) { WriteIndented = false };

    /// <summary>The web defaults (what the HTTP APIs use) with non-finite numbers written as null.</summary>
    public static readonly JsonSerializerOptions Web = WithFiniteNumbers(new(JsonSerializerDefaults.Web));

    /// <summary>Adds <see cref="NonFiniteAsNullConverter"/> to options the project does not own (ASP.NET's, for one); returns them.</summary>
    public static JsonSerializerOptions WithFiniteNumbers(JsonSerializerOptions options)
    {
        if (!options.Converters.Contains(NonFiniteAsNullConverter.Instance)) options.Converters.Add(NonFiniteAsNullConverter.Instance);
        return options;
    }

    public static string Serialize<T>(T value, bool indented = true) => JsonSerializer.Serialize(value, indented ? Options : Compact);

    public static T Read<T>(string path)
    {
        if (!File.Exists(path)) throw new IslandsException($"{path}: file not found");
        try
        {
            return JsonSerializer.Deserialize<T>(File.ReadAllText(path), Options)
                   ?? throw new IslandsException($"{path}: empty JSON document");
        }
        catch (JsonException e)
        {
            throw new IslandsException($"{path}: invalid JSON ({e.Message})", e);
        }
    }

    public static void WriteAtomic<T>(string path, T value) => AtomicFile.WriteAllText(path, Serialize(value));
}
