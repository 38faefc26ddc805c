using System.Diagnostics;

namespace Islands.Island.Tests;

/// <summary>One real `islands` process (an island node or a serving node) on loopback, its output appended to a log file.</summary>
public sealed class NodeProcess(int port, int httpPort, string log)
{
    public int Port { get; } = port;
    public int HttpPort { get; } = httpPort;
    public string Log { get; } = log;
    public Process? Process { get; private set; }
    public string Http => $"http://127.0.0.1:{HttpPort}";
    public string ContactPoint => $"127.0.0.1:{HttpPort}";
    public bool Alive => Process is { HasExited: false };

    public string AkkaAddress(string systemName) => $"akka.tcp://{systemName}@127.0.0.1:{Port}";

    /// <summary>Starts `islands ARGS` from the test's build; secrets such as connection strings go in <paramref name="environment"/>, as the README tells operators.</summary>
    public void Start(IEnumerable<string> args, IReadOnlyDictionary<string, string> environment)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "islands.dll"));
        foreach (var arg in args) info.ArgumentList.Add(arg);
        foreach (var (key, value) in environment) info.Environment[key] = value;
        var process = Process.Start(info)!;
        var writer = new StreamWriter(Log, append: true) { AutoFlush = true };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        Process = process;
    }

    /// <summary>Whether the log holds this text yet (read while the process still writes it).</summary>
    public bool LogContains(string text)
    {
        using var stream = new FileStream(Log, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new StreamReader(stream).ReadToEnd().Contains(text, StringComparison.Ordinal);
    }

    private static readonly string[] ClusterEvents =
    [
        "UNREACHABLE", "SBR took decision", "SBR is downing", "lease ", "Acquire lease result", "state change", "Singleton manager started",
        "Welcome from", "JOINING", "Leader is removing", "Exception", "fail: ",
    ];

    /// <summary>
    /// The last <paramref name="count"/> lines of the log that record the cluster's decisions (reachability, split-brain
    /// downing, leases, singleton hand-over, joins, errors), shortened: what a failed chaos test prints so that a CI
    /// failure can be explained from its output alone.
    /// </summary>
    public IEnumerable<string> ClusterEventLines(int count = 25)
    {
        if (!File.Exists(Log)) return [];
        using var stream = new FileStream(Log, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var lines = new List<string>();
        using var reader = new StreamReader(stream);
        while (reader.ReadLine() is { } line)
            if (ClusterEvents.Any(e => line.Contains(e, StringComparison.Ordinal)))
                lines.Add(System.Text.RegularExpressions.Regex.Replace(line, @"Akka\.Actor\.ActorSystem\[0\] \[[A-Z]+\]\[[^]]*\]\[Thread \d+\]", "") is var s && s.Length > 220 ? s[..220] : s);
        return lines.TakeLast(count);
    }
}
