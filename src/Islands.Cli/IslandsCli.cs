using System.CommandLine;
using Islands.Cli.Commands;
using Islands.Diffusion;
using Islands.Diffusion.Runtime;

namespace Islands.Cli;

/// <summary>The islands command line: builds the command tree, maps errors to one line and an exit code.</summary>
public static class IslandsCli
{
    public static RootCommand Build(TextWriter stdout, TextWriter stderr)
    {
        var root = new RootCommand("Islands: decentralized diffusion models trained as independent compute islands");
        root.Add(CommonOptions.Json);
        root.Add(CommonOptions.Verbose);
        root.Add(CommonOptions.Threads);
        root.Add(CommonOptions.Device);
        root.Add(DataCommands.Build(stdout, stderr));
        root.Add(TrainCommands.Build(stdout, stderr));
        root.Add(MethodsCommand.Build(stdout, stderr));
        root.Add(SampleCommand.Build(stdout, stderr));
        root.Add(DistillCommands.Build(stdout, stderr));
        root.Add(EvalCommand.Build(stdout, stderr));
        root.Add(BenchCommands.Build(stdout, stderr));
        root.Add(IslandCommands.Node(stdout, stderr));
        root.Add(IslandCommands.Status(stdout, stderr));
        root.Add(IslandCommands.Health(stdout, stderr));
        root.Add(ServingCommands.Serve(stdout, stderr));
        root.Add(ServingCommands.Generate(stdout, stderr));
        root.Add(DemoCommand.Build(stdout, stderr));
        root.Add(ExperimentCommands.Build(stdout, stderr));
        root.Add(ClusterCommands.Build(stdout, stderr));
        root.Add(ClusterCommands.Chaos(stdout, stderr));
        root.Add(TlsCommands.Build(stdout, stderr));
        return root;
    }

    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr)
    {
        var root = Build(stdout, stderr);
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var error in parsed.Errors) await stderr.WriteLineAsync($"islands: {error.Message}");
            return ExitCodes.Usage;
        }
        return await parsed.InvokeAsync(new InvocationConfiguration
        {
            Output = stdout,
            Error = stderr,
            EnableDefaultExceptionHandler = false,
            // The default of 2 s after Ctrl+C would kill the process in the middle of a checkpoint commit.
            ProcessTerminationTimeout = TimeSpan.FromSeconds(60),
        });
    }

    /// <summary>Runs a command body with the shared error policy: typed errors become one line, the exit code says which kind.</summary>
    public static Func<ParseResult, CancellationToken, Task<int>> Action(TextWriter stdout, TextWriter stderr,
        Func<CliContext, ParseResult, CancellationToken, Task<int>> body)
    {
        return async (parse, cancel) =>
        {
            var context = new CliContext(stdout, stderr, parse.GetValue(CommonOptions.Json), parse.GetValue(CommonOptions.Verbose));
            try
            {
                return await body(context, parse, cancel);
            }
            catch (ConfigException e)
            {
                await stderr.WriteLineAsync($"islands: error: {OptionNames.Describe(e)}");
                if (context.Verbose) await stderr.WriteLineAsync(e.ToString());
                return ExitCodes.Usage;
            }
            catch (IslandsException e)
            {
                await stderr.WriteLineAsync($"islands: error: {e.Message}");
                if (context.Verbose) await stderr.WriteLineAsync(e.ToString());
                return ExitCodes.Failure;
            }
            catch (OperationCanceledException)
            {
                await stderr.WriteLineAsync("islands: cancelled");
                return ExitCodes.Cancelled;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                await stderr.WriteLineAsync($"islands: error: {e.Message}");
                if (context.Verbose) await stderr.WriteLineAsync(e.ToString());
                return ExitCodes.Failure;
            }
            catch (Exception e)
            {
                await stderr.WriteLineAsync($"islands: internal error: {e.GetType().Name}: " +
                    $"{e.Message}{(context.Verbose ? "" : " (rerun with --verbose for details)")}");
                if (context.Verbose) await stderr.WriteLineAsync(e.ToString());
                return ExitCodes.Failure;
            }
        };
    }

    /// <summary>Initialises libtorch for commands that need it (not for --help or validation failures).</summary>
    public static void InitTorch(ParseResult parse) => TorchSetup.Initialise(parse.GetValue(CommonOptions.Threads));

    /// <summary>The line benchmarks print first: the CPU, the kernel path the self-test chose and what it found.</summary>
    public static string NumericsLine() => Diffusion.Numerics.NumericsPolicy.Report.Summary;
}
