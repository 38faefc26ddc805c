using System.Text.Json;
using System.Text.Json.Serialization;

namespace Islands.Diffusion.IO;

/// <summary>One set of JSON options for every file Islands writes: camelCase, enums as strings, indented.</summary>
public static class Json
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.KebabCaseLower) },
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public static readonly JsonSerializerOptions Compact = new(Options) { WriteIndented = false };

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
