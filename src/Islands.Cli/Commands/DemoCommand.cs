using System.CommandLine;
using Islands.Hosting;
using Islands.Cli.Demo;
using Spectre.Console;

namespace Islands.Cli.Commands;

/// <summary><c>islands demo</c>: the whole system on one machine (data, islands, serving, a client request), resumable.</summary>
public static class DemoCommand
{
    /// <summary>Under runs/ (ignored by git), so a demo run never modifies the checkout; the README's picture is docs/samples.png.</summary>
    public const string DefaultOutput = "runs/demo/samples.png";

    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var minutes = new Option<double>("--minutes")
        {
            Description = "Training time budget (the islands stop and commit when it runs out; a rerun continues)",
            DefaultValueFactory = _ => 10
        };
        var work = new Option<string>("--work") { Description = "Working directory: data, journals, checkpoints, results (rerunning resumes from it)",
            DefaultValueFactory = _ => "runs/demo" };
        var output = new Option<string?>("--out")
        {
            Description = $"The grid of generated images (a row per class); default samples.png in --work ({DefaultOutput})"
        };
        var port = new Option<int>("--port") { Description = "HTTP port of the API; the islands' status pages take the next five",
            DefaultValueFactory = _ => 7100 };
        var viewerPort = new Option<int?>("--viewer-port")
        {
            Description = "Port of the live viewer on 127.0.0.1 (default 7007; a free one with --port 0)",
        };
        var exit = new Option<bool>("--exit") { Description = "Exit after writing the samples instead of serving until Ctrl-C" };
        var degraded = new Option<bool>("--degraded-condition")
        {
            Description = "The experts also learn \"degraded, class c\", the calibrated source of `islands distill` (fixed on the first run)",
        };
        var command = new Command("demo", $"Train 4 expert islands and the router on this machine, serve them, and generate {DefaultOutput} " +
            "through the API")
        {
            minutes, work, output, port, viewerPort, exit, degraded,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, async (ctx, parse, cancel) =>
        {
            var budget = parse.GetValue(minutes);
            if (budget is <= 0 or > 10_000) throw new Diffusion.ConfigException("--minutes", $"{budget} must be more than 0 and at most 10000");
            IslandsCli.InitTorch(parse);
            var stdoutBefore = Console.Out;
            // Node logs and Akka's notices go to stderr; stdout carries only the result.
            Console.SetOut(stderr);
            try
            {
                var apiPort = parse.GetValue(port);
                await using var demo = new LocalDemo(parse.GetValue(work)!, apiPort, parse.GetValue(viewerPort) ?? (apiPort == 0 ? 0 : 7007), ctx.Log);
                var plan = demo.Prepare(budget, 4, parse.GetValue(degraded));
                ctx.Log($"starting {plan.K} expert islands and the router island (SQLite journals, checkpoints in {demo.Store})");
                await demo.StartIslandsAsync(cancel);
                // Serving (and its viewer) from the start: the viewer shows the islands training, the ensemble as they publish.
                await demo.StartServingAsync(cancel);
                ctx.Log($"viewer at {demo.ViewerUrl} (sign in with the key in {demo.ApiKeyFile}); API at {demo.ApiUrl}/v1");
                var clock = System.Diagnostics.Stopwatch.StartNew();
                var deadline = TimeSpan.FromMinutes(budget);
                var states = await Train(ctx, demo, deadline, clock, cancel);
                if (states.Any(s => s.Phase != "completed")) await demo.StopUnfinishedIslandsAsync(states);
                states = await demo.IslandStatesAsync(cancel);
                ctx.Log($"training after {clock.Elapsed.TotalMinutes:F1} min: {string.Join(", ", states.Select(s =>
                    $"{s.Island} {s.Phase} step {StatusText.Steps(s.Step, s.TotalSteps)}, " +
                    $"checkpoint {StatusText.Checkpoint(s.LastCheckpointStep, s.LastCheckpointLoss)}"))}");
                if (LocalDemo.UnusableIslands(states) is { Count: > 0 } unusable)
                    throw new Diffusion.IslandsException($"no usable model from {string.Join(", ", unusable)}; no grid was written");

                await demo.WaitForFinalPublicationsAsync(cancel);
                ctx.Log($"serving at {demo.ApiUrl}; asking it for 8 images of every class as a client would");
                var outputPath = Path.GetFullPath(parse.GetValue(output) ?? Path.Combine(parse.GetValue(work)!, "samples.png"));
                var (images, classes, seconds) = await demo.GenerateAsync(outputPath, 8, 20, cancel);
                var final = await demo.IslandStatesAsync(cancel);
                ctx.Result(new { samples = outputPath, images, classes, seconds, api = demo.ApiUrl, viewer = demo.ViewerUrl, apiKeyFile = demo.ApiKeyFile,
                    islands = final, plan }, w =>
                {
                    w.WriteLine($"wrote {outputPath}: {images} images, a row per class ({string.Join(", ", classes)}), generated in {seconds:F1} s");
                    w.WriteLine($"API:     {demo.ApiUrl}/v1/generations   (key in {demo.ApiKeyFile}; OpenAPI at /openapi/v1.json)");
                    w.WriteLine($"Viewer:  {demo.ViewerUrl}   (sign in with the same key)");
                    w.WriteLine($"         curl -H \"Authorization: Bearer $(cat {demo.ApiKeyFile})\" -H 'Content-Type: application/json' -d " +
                        $"'{{\"count\":16,\"class\":\"{classes[^1]}\"}}' {demo.ApiUrl}/v1/generations -o more.png");
                    foreach (var s in final) w.WriteLine(StatusText.DemoSummary(s));
                });
                if (!parse.GetValue(exit))
                {
                    ctx.Log("serving until Ctrl-C (rerun `islands demo` later to continue from the checkpoints)");
                    try { await Task.Delay(Timeout.Infinite, cancel); }
                    catch (OperationCanceledException) { ctx.Log("stopping: islands commit their current step"); }
                }
            }
            finally
            {
                Console.SetOut(stdoutBefore);
            }
            return ExitCodes.Ok;
        }));
        return command;
    }

    /// <summary>Waits until every island has completed or the budget runs out, showing one line per island.</summary>
    private static async Task<IReadOnlyList<DemoIslandState>> Train(CliContext ctx, LocalDemo demo, TimeSpan deadline,
        System.Diagnostics.Stopwatch clock, CancellationToken cancel)
    {
        IReadOnlyList<DemoIslandState> states = await demo.IslandStatesAsync(cancel);
        // A diverged (or failed) island will not complete: waiting out the budget for it would only hide it.
        bool Done() => states.All(s => s.Phase == "completed" || DemoIslandState.FailedPhases.Contains(s.Phase)) || clock.Elapsed >= deadline;
        if (!ctx.Interactive)
        {
            var last = DateTime.MinValue;
            while (!Done())
            {
                await Task.Delay(1000, cancel);
                states = await demo.IslandStatesAsync(cancel);
                if (DateTime.UtcNow - last < TimeSpan.FromSeconds(15) && !Done()) continue;
                last = DateTime.UtcNow;
                foreach (var s in states) ctx.Log(Line(s, clock, deadline));
            }
            return states;
        }
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        var table = new Table().AddColumns("island", "job", "phase", "step", "loss", "images/s", "checkpoint", "ETA");
        await console.Live(table).StartAsync(async live =>
        {
            while (true)
            {
                table.Rows.Clear();
                foreach (var s in states)
                    table.AddRow(Markup.Escape(s.Island), Markup.Escape(s.Job), Markup.Escape(s.Error is null ? s.Phase : $"{s.Phase}: {s.Error}"),
                        StatusText.Steps(s.Step, s.TotalSteps), StatusText.Loss(s.Loss), s.ImagesPerSecond.ToString("F0"),
                        Markup.Escape(StatusText.Checkpoint(s.LastCheckpointStep, s.LastCheckpointLoss)), Markup.Escape(Eta(s, clock, deadline)));
                table.Caption($"time budget {deadline.TotalMinutes:0.#} min, {clock.Elapsed:mm\\:ss} elapsed");
                live.Refresh();
                if (Done()) break;
                await Task.Delay(1000, cancel);
                states = await demo.IslandStatesAsync(cancel);
            }
        });
        return states;
    }

    private static string Eta(DemoIslandState s, System.Diagnostics.Stopwatch clock, TimeSpan deadline)
    {
        if (s.Phase == "completed") return "done";
        var left = deadline - clock.Elapsed;
        if (s.Step is not > 0 || s.TotalSteps is not > 0) return $"≤ {left:mm\\:ss}";
        var perStep = clock.Elapsed.TotalSeconds / s.Step.Value;
        var eta = TimeSpan.FromSeconds(perStep * (s.TotalSteps.Value - s.Step.Value));
        return eta < left ? eta.ToString(@"mm\:ss") : $"budget ({left:mm\\:ss})";
    }

    private static string Line(DemoIslandState s, System.Diagnostics.Stopwatch clock, TimeSpan deadline) =>
        $"{StatusText.Demo(s)} ETA {Eta(s, clock, deadline)}";
}
