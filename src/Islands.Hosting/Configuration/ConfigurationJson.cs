using System.Text.Json;
using System.Text.Json.Nodes;

namespace Islands.Hosting.Configuration;

/// <summary>A JSON configuration file's text from colon-path settings, for programs that write a node's --config file.</summary>
public static class ConfigurationJson
{
    /// <param name="settings">Keys such as islands:http:port; a value is a string, number, boolean, array or null (left out).</param>
    public static string From(IEnumerable<(string Key, object? Value)> settings)
    {
        var root = new JsonObject();
        foreach (var (key, value) in settings)
        {
            if (value is null) continue;
            var parts = key.Split(':');
            var node = root;
            foreach (var part in parts[..^1])
            {
                if (node[part] is not JsonObject child) node[part] = child = new JsonObject();
                node = child;
            }
            node[parts[^1]] = JsonSerializer.SerializeToNode(value);
        }
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}
