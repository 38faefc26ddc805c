using System.Collections;
using System.Globalization;
using System.Text.Json;
using Akka.Configuration;
using Islands.Diffusion;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Islands.Hosting.Configuration;

/// <summary>
/// The configuration layers every node reads, through Microsoft.Extensions.Configuration, lowest first: the node kind's
/// defaults (<c>config/*.json</c> beside the executable), the JSON file given with --config, environment variables (the
/// documented <c>ISLANDS_*</c> names and the .NET form <c>Islands__Http__Port</c>), then command-line options.
/// </summary>
public static class NodeConfiguration
{
    /// <summary>Builds the layered configuration.</summary>
    /// <param name="environment">The process environment unless given (tests give their own).</param>
    /// <param name="environmentKeys">The documented variable names and the key each sets.</param>
    /// <param name="options">Keys (colon paths) set by command-line options; null values are left out.</param>
    /// <param name="listKeys">Keys of lists, which the environment and the command line give comma-separated.</param>
    public static IConfigurationRoot Build(string defaultsFile, string? configFile, IReadOnlyDictionary<string, string?> options,
        IDictionary? environment, IReadOnlyDictionary<string, string> environmentKeys, IReadOnlySet<string> listKeys)
    {
        var env = environment ?? Environment.GetEnvironmentVariables();
        var fromEnvironment = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (DictionaryEntry entry in env)
        {
            if (entry.Key is not string name || entry.Value is not string value) continue;
            // The .NET convention, as EnvironmentVariablesConfigurationProvider reads it: '__' separates sections.
            if (name.StartsWith("Islands__", StringComparison.OrdinalIgnoreCase)) fromEnvironment[name.Replace("__", ":")] = value;
        }
        foreach (var (name, key) in environmentKeys)
            if (env.Contains(name) && env[name] is string value) fromEnvironment[key] = value;
        var builder = new ConfigurationBuilder();
        AddJson(builder, defaultsFile, "the defaults beside the executable");
        if (configFile is not null) AddJson(builder, configFile, "--config");
        builder.AddInMemoryCollection(Expand(fromEnvironment, listKeys));
        builder.AddInMemoryCollection(Expand(options.Where(p => p.Value is not null), listKeys));
        return builder.Build();
    }

    /// <summary>
    /// "a,b" for a list key becomes the children key:0 and key:1, as a JSON array's elements are, replacing what the same
    /// layer set before (the documented name after the .NET form); an empty list still sets the key, so that it
    /// replaces a lower layer's list instead of letting it show through.
    /// </summary>
    private static Dictionary<string, string?> Expand(IEnumerable<KeyValuePair<string, string?>> pairs, IReadOnlySet<string> listKeys)
    {
        var data = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (var (key, value) in pairs)
        {
            if (!listKeys.Contains(key))
            {
                data[key] = value;
                continue;
            }
            foreach (var stale in data.Keys.Where(k => k.StartsWith(key + ":", StringComparison.OrdinalIgnoreCase)).ToList()) data.Remove(stale);
            var items = Split(value);
            if (items.Length == 0) data[key] = null;
            else data.Remove(key);
            for (var i = 0; i < items.Length; i++) data[$"{key}:{i.ToString(CultureInfo.InvariantCulture)}"] = items[i];
        }
        return data;
    }

    /// <summary>The colon paths of an options class's lists (string[] properties), below <paramref name="prefix"/>.</summary>
    public static HashSet<string> ListKeys(Type type, string prefix)
    {
        var keys = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var property in type.GetProperties())
        {
            var path = prefix + ":" + char.ToLowerInvariant(property.Name[0]) + property.Name[1..];
            if (property.PropertyType == typeof(string[])) keys.Add(path);
            else if (property.PropertyType.IsClass && property.PropertyType != typeof(string)
                && property.PropertyType != typeof(IConfigurationSection))
                keys.UnionWith(ListKeys(property.PropertyType, path));
        }
        return keys;
    }

    private static void AddJson(ConfigurationBuilder builder, string path, string what)
    {
        var full = Path.GetFullPath(path);
        if (!File.Exists(full)) throw new ConfigException("--config", $"{path}: file not found ({what})");
        try
        {
            // Parsed once here so that a syntax error names the file rather than surfacing from Build().
            new ConfigurationBuilder().AddJsonFile(full, optional: false).Build();
        }
        catch (Exception e) when (e is FormatException or InvalidDataException or JsonException)
        {
            var inner = e;
            while (inner.InnerException is not null) inner = inner.InnerException;
            throw new ConfigException("--config", $"{path}: not valid JSON ({inner.Message})");
        }
        builder.AddJsonFile(full, optional: false);
    }

    /// <summary>
    /// Binds a section to its options class and runs its validator through the Options machinery, as the host does at start;
    /// an unknown key, an unconvertible value or a failed check becomes a <see cref="ConfigException"/> naming the key.
    /// </summary>
    public static TOptions Read<TOptions, TValidator>(IConfiguration configuration, string section)
        where TOptions : class where TValidator : class, IValidateOptions<TOptions>
    {
        if (OutsideSection(configuration, section) is { } outside) throw outside;
        if (UnknownKey(configuration.GetSection(section), typeof(TOptions)) is { } unknown) throw unknown;
        var services = new ServiceCollection();
        services.AddSingleton(configuration);
        services.AddOptions<TOptions>().Bind(configuration.GetSection(section), b => b.ErrorOnUnknownConfiguration = true)
            .PostConfigure(o => AssignLists(o, configuration, section));
        services.AddSingleton<IValidateOptions<TOptions>, TValidator>();
        using var provider = services.BuildServiceProvider();
        try
        {
            return provider.GetRequiredService<IOptions<TOptions>>().Value;
        }
        catch (OptionsValidationException e)
        {
            throw Failure(e.Failures.First());
        }
        catch (InvalidOperationException e) when (e.Message.Contains("configuration", StringComparison.OrdinalIgnoreCase))
        {
            throw BindFailure(e, section);
        }
    }

    /// <summary>Each list from its highest layer (see <see cref="List"/>), after the binder has merged the layers' elements.</summary>
    private static void AssignLists(object options, IConfiguration configuration, string path)
    {
        foreach (var property in options.GetType().GetProperties())
        {
            var key = path + ":" + char.ToLowerInvariant(property.Name[0]) + property.Name[1..];
            if (property.PropertyType == typeof(string[])) property.SetValue(options, List(configuration, key));
            else if (property.PropertyType.IsClass && property.PropertyType != typeof(string)
                && property.PropertyType != typeof(IConfigurationSection) && property.GetValue(options) is { } nested)
                AssignLists(nested, configuration, key);
        }
    }

    /// <summary>A key beside the node's section (a block carried over from a HOCON file, a setting of the other node kind).</summary>
    private static ConfigException? OutsideSection(IConfiguration configuration, string section)
    {
        var parts = section.Split(':');
        IConfiguration level = configuration;
        var path = "";
        foreach (var part in parts)
        {
            foreach (var child in level.GetChildren().Where(c => !c.Key.Equals(part, StringComparison.OrdinalIgnoreCase)))
                return new ConfigException(path + CamelPath(child.Key), child.Key.Equals("akka", StringComparison.OrdinalIgnoreCase)
                    ? "akka.* settings are HOCON: give them in the file named by akkaConfig (--akka-config)"
                    : $"unknown setting; this node reads {section} only");
            level = level.GetSection(part);
            path += part + ":";
        }
        return null;
    }

    /// <summary>The first key of a section that is no property of its options class (a typo would otherwise be ignored).</summary>
    private static ConfigException? UnknownKey(IConfigurationSection section, Type type)
    {
        var properties = type.GetProperties().ToDictionary(p => p.Name, StringComparer.OrdinalIgnoreCase);
        foreach (var child in section.GetChildren())
        {
            if (!properties.TryGetValue(child.Key, out var property))
                return new ConfigException(CamelPath(child.Path), "unknown setting; this section has " +
                    string.Join(", ", properties.Keys.Select(k => char.ToLowerInvariant(k[0]) + k[1..])));
            var target = property.PropertyType;
            if (target.IsClass && target != typeof(string) && !target.IsArray && target != typeof(IConfigurationSection)
                && UnknownKey(child, target) is { } nested)
                return nested;
        }
        return null;
    }

    private static string CamelPath(string path) =>
        string.Join(':', path.Split(':').Select(s => s.Length == 0 ? s : char.ToLowerInvariant(s[0]) + s[1..]));

    /// <summary>A validator's failure is "key: problem".</summary>
    internal static ConfigException Failure(string failure)
    {
        var colon = failure.IndexOf(": ", StringComparison.Ordinal);
        return colon < 0 ? new ConfigException("config", failure) : new ConfigException(failure[..colon], failure[(colon + 2)..]);
    }

    private static ConfigException BindFailure(InvalidOperationException e, string section)
    {
        // The binder's messages name the path ("... at 'islands:port' ..." or "'Prt' were not found on type ...").
        var message = (e.InnerException is { } inner ? e.Message + " " + inner.Message : e.Message);
        var at = message.IndexOf(" at '", StringComparison.Ordinal);
        if (at >= 0)
        {
            var end = message.IndexOf('\'', at + 5);
            var value = message.IndexOf("value '", StringComparison.Ordinal);
            var text = value >= 0 ? message[(value + 7)..message.IndexOf('\'', value + 7)] : "";
            return new ConfigException(CamelPath(message[(at + 5)..end]), $"'{text}' is not a valid value here");
        }
        var quote = message.IndexOf('\'');
        var unknown = quote >= 0 ? message[(quote + 1)..message.IndexOf('\'', quote + 1)] : "";
        return new ConfigException(section, $"unknown setting {unknown} ({e.Message.Split(" on type ")[0]})");
    }

    /// <summary>
    /// A list's value from the highest layer that sets it: a JSON array, or a comma-separated string from the environment
    /// or a command line. (Microsoft.Extensions.Configuration merges arrays index by index, so a lower layer's longer list
    /// would otherwise show through a shorter one.)
    /// </summary>
    public static string[] List(IConfiguration configuration, string key)
    {
        if (configuration is not IConfigurationRoot root) return Split(configuration[key]);
        foreach (var provider in root.Providers.Reverse())
        {
            var children = provider.GetChildKeys([], key).Distinct().ToList();
            if (children.Count > 0)
                return [.. children.OrderBy(c => int.TryParse(c, out var i) ? i : int.MaxValue)
                    .Select(c => provider.TryGet(key + ":" + c, out var v) ? v ?? "" : "").Where(v => v.Length > 0)];
            if (provider.TryGet(key, out var value)) return Split(value);
        }
        return [];
    }

    private static string[] Split(string? value) =>
        (value ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>A duration as HOCON and Docker users write it (500ms, 5s, 1m, 1h, 7d) or as .NET's TimeSpan (00:00:05).</summary>
    public static TimeSpan? Duration(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        if (TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out var span) && text.Contains(':')) return span;
        try
        {
            return ConfigurationFactory.ParseString($"value = {JsonSerializer.Serialize(text.Trim())}").GetTimeSpan("value", null, false);
        }
        catch (Exception e) when (e is FormatException or ConfigurationException or OverflowException)
        {
            return null;
        }
    }

    /// <summary>A size in bytes (4096, 256000b, 4MiB, 4GiB).</summary>
    public static long? Bytes(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        try
        {
            return ConfigurationFactory.ParseString($"value = {JsonSerializer.Serialize(text.Trim())}").GetByteSize("value");
        }
        catch (Exception e) when (e is FormatException or ConfigurationException or OverflowException)
        {
            return null;
        }
    }

    /// <summary>on/off as the HOCON files and compose.yaml wrote switches, and true/false as JSON does.</summary>
    public static bool? Switch(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        "on" or "true" or "yes" or "1" => true,
        "off" or "false" or "no" or "0" or "" or null => false,
        _ => null,
    };

    /// <summary>Bearer keys from a list and a file (one per line, '#' comments); a key that is too short fails naming the file's key.</summary>
    public static IReadOnlyList<string> KeysWithFile(IEnumerable<string> keys, string? file, string fileKey)
    {
        var all = keys.Where(k => k.Length > 0).ToList();
        if (string.IsNullOrWhiteSpace(file)) return all;
        var read = File.ReadAllLines(file).Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        if (!read.All(SettingChecks.IsValidKey)) throw new ConfigException(fileKey, $"{file}: {SettingChecks.KeyRule}");
        all.AddRange(read);
        return all;
    }

    /// <summary>
    /// The actor system's HOCON: the node kind's defaults under the file named by <paramref name="key"/>, which may hold
    /// akka.* only (every other setting is read through Microsoft.Extensions.Configuration).
    /// </summary>
    public static Config Akka(string defaultsFile, string? overridesFile, string key)
    {
        var defaults = ConfigurationFactory.ParseString(File.ReadAllText(defaultsFile));
        if (string.IsNullOrWhiteSpace(overridesFile)) return defaults;
        Config overrides;
        try
        {
            overrides = ConfigurationFactory.ParseString(File.ReadAllText(overridesFile));
        }
        catch (Exception e) when (e is ConfigurationException or FormatException)
        {
            throw new ConfigException(key, $"{overridesFile}: not valid HOCON ({e.Message})");
        }
        var other = overrides.Root.GetObject().Items.Keys.Where(k => k != "akka").ToList();
        if (other.Count > 0)
            throw new ConfigException(key, $"{overridesFile}: '{other[0]}' is not an akka.* setting; give it in the JSON configuration");
        return overrides.WithFallback(defaults);
    }
}
