using System.Globalization;
using Microsoft.Extensions.Options;

namespace Islands.Hosting.Configuration;

/// <summary>
/// Collects a validator's failures as "key: problem", the key a colon path as in the JSON files
/// (<c>islands:http:port</c>), so that <see cref="NodeConfiguration.Read{TOptions,TValidator}"/> reports the first one.
/// </summary>
public sealed class SettingChecks(string section)
{
    private readonly List<string> failures = [];

    public string Key(string name) => section + ":" + name;

    public void Fail(string name, string problem) => failures.Add($"{Key(name)}: {problem}");

    public string Required(string name, string? value)
    {
        if (string.IsNullOrWhiteSpace(value)) Fail(name, "is required");
        return value ?? "";
    }

    public void Range(string name, long value, long min, long max)
    {
        if (value < min || value > max)
            Fail(name, $"{value.ToString(CultureInfo.InvariantCulture)} must be an integer in {min}..{max}");
    }

    public void Range(string name, double value, double min, double max)
    {
        if (!double.IsFinite(value) || value < min || value > max)
            Fail(name, $"{value.ToString(CultureInfo.InvariantCulture)} must be a number in " +
                $"{min.ToString(CultureInfo.InvariantCulture)}..{max.ToString(CultureInfo.InvariantCulture)}");
    }

    public void OneOf(string name, string? value, params string[] allowed)
    {
        if (value is null || !allowed.Contains(value.ToLowerInvariant()))
            Fail(name, $"'{value}' must be {string.Join(", ", allowed[..^1])} or {allowed[^1]}");
    }

    public TimeSpan Duration(string name, string? text)
    {
        var value = NodeConfiguration.Duration(text);
        if (value is null) Fail(name, $"'{text}' is not a duration such as 500ms, 5s or 1m");
        else if (value <= TimeSpan.Zero) Fail(name, $"{value} must be positive");
        return value ?? TimeSpan.Zero;
    }

    public bool Switch(string name, string? text)
    {
        var value = NodeConfiguration.Switch(text);
        if (value is null) Fail(name, $"'{text}' must be on or off");
        return value ?? false;
    }

    public void File(string name, string? path, string what)
    {
        if (!string.IsNullOrWhiteSpace(path) && !System.IO.File.Exists(path)) Fail(name, $"'{path}': {what} not found");
    }

    /// <summary>Bearer keys: at least 16 printable characters; the failure names the setting, never the key.</summary>
    public void Keys(string name, IEnumerable<string> keys)
    {
        if (!keys.All(IsValidKey)) Fail(name, KeyRule);
    }

    public const string KeyRule = "every key must be at least 16 printable characters without spaces (a key is never shown)";

    public static bool IsValidKey(string key) => key.Length >= 16 && key.All(c => c > ' ' && c <= '~');

    public ValidateOptionsResult Result => failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
}
