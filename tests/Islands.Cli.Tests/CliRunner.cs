using System.Diagnostics;
using System.Text.Json;
using Islands.Diffusion.Data;

namespace Islands.Cli.Tests;

public sealed record CliResult(int ExitCode, string Stdout, string Stderr)
{
    public JsonElement Json => JsonDocument.Parse(Stdout).RootElement;
}

/// <summary>Drives the real command line: in-process through the same entry point as Program, or as a separate OS process.</summary>
public static class CliRunner
{
    private static readonly SemaphoreSlim Gate = new(1, 1);

    public static async Task<CliResult> RunAsync(params string[] args)
    {
        // One command at a time: commands share libtorch's process-wide thread pool.
        await Gate.WaitAsync();
        try
        {
            var stdout = new StringWriter();
            var stderr = new StringWriter();
            var code = await IslandsCli.RunAsync(args.Concat(["--threads", "2"]).ToArray(), stdout, stderr);
            return new CliResult(code, stdout.ToString(), stderr.ToString());
        }
        finally
        {
            Gate.Release();
        }
    }

    public static CliResult RunProcess(params string[] args) => RunProcess(new Dictionary<string, string>(), args);

    /// <summary>The real islands binary in a child process, with extra environment variables (e.g. a test-only fault).</summary>
    public static CliResult RunProcess(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "islands.dll");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (name, value) in environment) info.Environment[name] = value;
        info.ArgumentList.Add(dll);
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5))) process.Kill(entireProcessTree: true);
        return new CliResult(process.ExitCode, stdout.Result, stderr.Result);
    }

    public static string TempDir(string name)
    {
        var dir = Path.Combine(Path.GetTempPath(), $"islands-cli-{name}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static readonly Lazy<Task<string>> FashionMnist = new(async () =>
    {
        var dir = Path.Combine(Path.GetTempPath(), $"islands-cli-fm-{Environment.ProcessId}");
        if (File.Exists(Path.Combine(dir, DatasetManifest.FileName))) return dir;
        var result = await RunAsync("data", "import", "--source", "fashion-mnist", "--out", dir);
        if (result.ExitCode != 0) throw new InvalidOperationException($"import failed: {result.Stderr}");
        return dir;
    });

    /// <summary>Fashion-MNIST imported through the CLI once per test run (.ci/run installs Debian's dataset-fashion-mnist).</summary>
    public static Task<string> FashionMnistAsync() => FashionMnist.Value;
}
