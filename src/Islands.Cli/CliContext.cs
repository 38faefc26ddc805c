using System.CommandLine;
using System.Text.Json;
using Islands.Diffusion.IO;

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

    public void Result<T>(T value, Action<TextWriter> human)
    {
        if (Json) Out.WriteLine(Diffusion.IO.Json.Serialize(value));
        else human(Out);
    }
}

public static class CommonOptions
{
    public static readonly Option<bool> Json = new("--json") { Description = "Print the result as JSON on stdout", Recursive = true };
    public static readonly Option<bool> Verbose = new("--verbose") { Description = "Print stack traces with errors", Recursive = true };
    public static readonly Option<int> Threads = new("--threads") { Description = "CPU threads for libtorch (0 = all cores)", DefaultValueFactory = _ => 0, Recursive = true };
    public static readonly Option<string> Device = new("--device") { Description = "auto, cpu or cuda", DefaultValueFactory = _ => "auto", Recursive = true };

    static CommonOptions()
    {
        Device.AcceptOnlyFromAmong("auto", "cpu", "cuda");
    }
}
