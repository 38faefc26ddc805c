using Spectre.Console;

namespace Islands.Cli;

/// <summary>
/// Shows a long job's progress: a Spectre.Console bar with ETA on an interactive terminal, or one plain line at most
/// every few seconds otherwise (CI logs, pipes, tests).
/// </summary>
public sealed class ProgressReporter
{
    private readonly CliContext context;
    private readonly string title;
    private DateTime lastLine = DateTime.MinValue;

    public ProgressReporter(CliContext context, string title)
    {
        this.context = context;
        this.title = title;
    }

    public async Task<T> RunAsync<T>(double total, Func<Action<double, string>, Task<T>> work)
    {
        if (!context.Interactive)
        {
            return await work((done, status) =>
            {
                if (DateTime.UtcNow - lastLine < TimeSpan.FromSeconds(5) && done < total) return;
                lastLine = DateTime.UtcNow;
                context.Log($"{title}: {done:0}/{total:0} {status}");
            });
        }
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        T result = default!;
        await console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .StartAsync(async ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), maxValue: total);
                result = await work((done, status) =>
                {
                    task.Value = done;
                    task.Description = Markup.Escape($"{title} {status}");
                });
                task.Value = total;
            });
        return result;
    }
}
