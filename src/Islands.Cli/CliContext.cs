using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Islands.Diffusion.IO;
using Islands.Diffusion.Numerics;

namespace Islands.Cli;

/// <summary>Where a command writes: results to stdout (JSON with --json), logs and progress to stderr.</summary>
public sealed class CliContext(TextWriter stdout, TextWriter stderr, bool json, bool verbose)
{
    public TextWriter Out { get; } = stdout;
    public TextWriter Err { get; } = stderr;
    public bool Json { get; } = json;
    public bool Verbose { get; } = verbose;

    /// <summary>Progress bars only when stderr is a real terminal; otherwise plain log lines (CI logs, tests, pipes).</summary>
    public bool Interactive { get; } = ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected;

    public void Log(string message) => Err.WriteLine(message);

    /// <summary>Every JSON result of a command that ran libtorch says which kernel path computed it (the self-test's status).</summary>
    private static string WithNumerics<T>(T value)
    {
        var numerics = NumericsPolicy.ReportIfTested;
        if (numerics is null || JsonSerializer.SerializeToNode(value, Diffusion.IO.Json.Options) is not JsonObject node
            || node.ContainsKey("numerics"))
            return Diffusion.IO.Json.Serialize(value);
        node["numerics"] = JsonSerializer.SerializeToNode(numerics.Status, Diffusion.IO.Json.Options);
        return node.ToJsonString(Diffusion.IO.Json.Options);
    }

    public void Result<T>(T value, Action<TextWriter> human)
    {
        if (Json) Out.WriteLine(WithNumerics(value));
        else human(Out);
    }
}

public static class CommonOptions
{
    public static readonly Option<bool> Json = new("--json") { Description = "Print the result as JSON on stdout", Recursive = true };
    public static readonly Option<bool> Verbose = new("--verbose") { Description = "Print stack traces with errors", Recursive = true };
    public static readonly Option<int> Threads = new("--threads") { Description = "CPU threads for libtorch (0 = all cores)",
        DefaultValueFactory = _ => 0, Recursive = true };
    public static readonly Option<string> Device = new("--device") { Description = "auto, cpu or cuda", DefaultValueFactory = _ => "auto",
        Recursive = true };

    static CommonOptions()
    {
        Device.AcceptOnlyFromAmong("auto", "cpu", "cuda");
    }
}
