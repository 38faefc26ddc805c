using System.CommandLine;
using System.Text.Json;
using Islands.Diffusion;
using Islands.Diffusion.IO;
using Islands.Diffusion.Methods;

namespace Islands.Cli.Commands;

/// <summary><c>islands methods [NAME]</c>: the registered training methods, and one method's config with its defaults.</summary>
public static class MethodsCommand
{
    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var name = new Argument<string?>("name") { Description = "A method: print its config with the defaults", Arity = ArgumentArity.ZeroOrOne };
        var command = new Command("methods", "List the training methods an island can run (an island's islands:job names one), or show one's " +
            "config defaults")
        {
            name,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, (ctx, parse, _) =>
        {
            var registry = MethodRegistry.Default;
            var entries = registry.Methods.Select(m => new MethodEntry(m.Name, m.Description, m.ConfigType.Name,
                JsonSerializer.SerializeToElement((object)m.Defaults, m.ConfigType, Json.Options))).ToList();
            if (parse.GetValue(name) is { } wanted)
            {
                var method = registry.Methods.FirstOrDefault(m => m.Name == wanted)
                    ?? throw new ConfigException("name",
                        $"'{wanted}' is not a method; registered: {string.Join(", ", registry.Methods.Select(m => m.Name))}");
                var entry = entries.Single(e => e.Name == method.Name);
                ctx.Result(entry, w =>
                {
                    w.WriteLine($"{entry.Name}: {entry.Description}");
                    w.WriteLine($"config {entry.Config} (islands:training in an island's JSON configuration; config.json in a run directory), " +
                        "defaults:");
                    w.WriteLine(JsonSerializer.Serialize(entry.Defaults, Json.Options));
                });
            }
            else
            {
                ctx.Result(entries, w =>
                {
                    foreach (var e in entries) w.WriteLine($"{e.Name,-10} {e.Config,-14} {e.Description}");
                });
            }
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }

    private sealed record MethodEntry(string Name, string Description, string Config, JsonElement Defaults);
}
