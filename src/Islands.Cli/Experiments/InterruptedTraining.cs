using System.Diagnostics;
using System.Globalization;
using Islands.Hosting;
using Islands.Diffusion;
using Islands.Diffusion.Configs;
using Islands.Diffusion.IO;
using Islands.Diffusion.Training;
using Islands.Cli.Launcher;

namespace Islands.Cli.Experiments;

/// <summary>
/// What a failure costs: the expert is trained by the real <c>islands train expert</c> command in its own process,
/// that process is SIGKILLed halfway (no chance to commit), and the same command is run again, resuming from the last
/// checkpoint it committed. The time both invocations took, beside the uninterrupted run's, is the wall-clock lost.
/// </summary>
public sealed class InterruptedTraining(Action<string> log)
{
    public FailureOutcome Run(TrainConfig config, string runDirectory, TrainingOutcome baseline, Action<double> progress, CancellationToken cancel)
    {
        // A half-finished earlier attempt has no honest timing: start the interrupted run over.
        if (Directory.Exists(runDirectory)) Directory.Delete(runDirectory, recursive: true);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(runDirectory))!);
        var every = Math.Max(1, config.Steps / 6);
        var arguments = Arguments(config, runDirectory, every);

        var first = Stopwatch.StartNew();
        var firstLog = Path.Combine(runDirectory, "..", "interrupted.log");
        using var process = new ChildProcess(arguments);
        var store = new RunDirectory(runDirectory).Checkpoints;
        var halfway = config.Steps / 2.0;
        var killed = false;
        var seen = new List<(long Step, double At)>();
        while (!process.Process.HasExited)
        {
            cancel.ThrowIfCancellationRequested();
            Thread.Sleep(10);
            if (store.List().FirstOrDefault() is { Step: > 0 } newest && (seen.Count == 0 || seen[^1].Step != newest.Step))
                seen.Add((newest.Step, first.Elapsed.TotalSeconds));
            if (seen.Count >= 2)
            {
                // Two commits give the training speed without the process start; extrapolate to the halfway step.
                var (a, b) = (seen[^2], seen[^1]);
                var perStep = (b.At - a.At) / (b.Step - a.Step);
                if (first.Elapsed.TotalSeconds >= b.At + (halfway - b.Step) * perStep)
                {
                    process.Process.Kill();
                    killed = true;
                    break;
                }
            }
            progress(0.5 * Math.Min(1, first.Elapsed.TotalSeconds / Math.Max(1, baseline.Seconds)));
        }
        process.Process.WaitForExit();
        var killedAfter = first.Elapsed.TotalSeconds;
        process.SaveLog(firstLog);
        if (!killed && process.Process.ExitCode != 0)
            throw new IslandsException($"{runDirectory}: 'islands {string.Join(' ', arguments)}' failed with exit code {process.Process.ExitCode}; " +
                $"see {firstLog}");
        log(killed
            ? string.Create(CultureInfo.InvariantCulture, $"failure run: killed the training process (SIGKILL) after {killedAfter:F1} s; running " +
                $"the same command again")
            : "failure run: the training process finished before it could be killed");

        var second = Stopwatch.StartNew();
        var resumedLog = Path.Combine(runDirectory, "..", "resumed.log");
        using var resumed = new ChildProcess(arguments);
        while (!resumed.Process.WaitForExit(200))
        {
            if (cancel.IsCancellationRequested)
            {
                resumed.Process.Kill();
                cancel.ThrowIfCancellationRequested();
            }
            progress(0.5 + 0.5 * Math.Min(1, second.Elapsed.TotalSeconds / Math.Max(1, baseline.Seconds / 2)));
        }
        resumed.Process.WaitForExit();
        var resumedSeconds = second.Elapsed.TotalSeconds;
        resumed.SaveLog(resumedLog);
        if (resumed.Process.ExitCode != 0)
            throw new IslandsException($"{runDirectory}: the resumed training failed with exit code {resumed.Process.ExitCode}; see {resumedLog}");
        var summary = System.Text.Json.JsonDocument.Parse(resumed.Stdout).RootElement;
        var resumedFrom = summary.GetProperty("resumedFromStep").GetInt64();
        var frozen = new RunDirectory(runDirectory).LoadConfig();
        var differences = config.DifferencesForResume(frozen).ToList();
        if (differences.Count > 0 || frozen.Steps != config.Steps)
            throw new IslandsException($"{runDirectory}: the CLI trained another configuration than the experiment's " +
                $"({string.Join(", ", differences)})");

        var same = SameFinalWeights(baseline.Run, runDirectory, config.Steps);
        return new FailureOutcome(0, runDirectory, config.Steps, every, baseline.Seconds, killed, killedAfter, resumedFrom, resumedSeconds,
            killedAfter + resumedSeconds - baseline.Seconds, same);
    }

    private static bool SameFinalWeights(string baselineRun, string run, long step)
    {
        string Weights(string r) => Path.Combine(new RunDirectory(r).Checkpoints.List().First(c => c.Step == step).Directory, ExpertTrainer.EmaFile);
        return AtomicFile.Sha256(Weights(baselineRun)) == AtomicFile.Sha256(Weights(run));
    }

    private static List<string> Arguments(TrainConfig c, string runDirectory, int checkpointEvery)
    {
        string F(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        return
        [
            "train", "expert", "--data", c.DataDirectory, "--partitions", c.PartitionsFile!, "--expert", $"{c.Expert}",
            "--steps", $"{c.Steps}", "--batch", $"{c.BatchSize}", "--lr", F(c.LearningRate), "--warmup", $"{c.WarmupSteps}",
            "--seed", $"{c.Seed}", "--checkpoint-every", $"{checkpointEvery}", "--keep", $"{c.KeepCheckpoints}", "--ema", F(c.EmaDecay),
            "--t-sampling", c.TimeSampling, "--label-dropout", F(c.LabelDropout), "--base-channels", $"{c.ModelOrDefault.BaseChannels}",
            "--channel-mults", string.Join(',', c.ModelOrDefault.Multipliers), "--precision", c.Precision, "--out", runDirectory,
            "--threads", $"{TorchSharp.torch.get_num_threads()}", "--json",
        ];
    }

    /// <summary>The islands CLI in its own process, its output kept for the run's log.</summary>
    private sealed class ChildProcess : IDisposable
    {
        private readonly System.Text.StringBuilder stdout = new();
        private readonly System.Text.StringBuilder both = new();

        public ChildProcess(IReadOnlyList<string> arguments)
        {
            var launcher = LocalCluster.Launcher();
            var info = new ProcessStartInfo(launcher[0]) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in launcher.Skip(1).Concat(arguments)) info.ArgumentList.Add(a);
            Process = Process.Start(info) ?? throw new IslandsException($"could not start {launcher[0]}");
            Process.OutputDataReceived += (_, e) => Append(e.Data, toStdout: true);
            Process.ErrorDataReceived += (_, e) => Append(e.Data, toStdout: false);
            Process.BeginOutputReadLine();
            Process.BeginErrorReadLine();
        }

        public Process Process { get; }

        public string Stdout
        {
            get { lock (both) return stdout.ToString(); }
        }

        public void SaveLog(string path)
        {
            lock (both) AtomicFile.WriteAllText(path, both.ToString());
        }

        private void Append(string? line, bool toStdout)
        {
            if (line is null) return;
            lock (both)
            {
                both.AppendLine(line);
                if (toStdout) stdout.AppendLine(line);
            }
        }

        public void Dispose() => Process.Dispose();
    }
}
