using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace Islands.Diffusion.Training;

/// <summary>
/// Counts a trainer's bad steps: a step whose loss or total gradient norm is not finite. Such a step leaves the weights,
/// the optimizer state and the EMA untouched (the trainer zeroes its gradients instead of stepping), but Step still
/// advances, so the next step draws the next (seed, step) stream and a deterministic fault cannot loop on one step.
/// </summary>
public sealed class NonFiniteGuard(int maxConsecutiveBadSteps)
{
    public int MaxConsecutiveBadSteps { get; } = maxConsecutiveBadSteps;

    /// <summary>Bad steps in this process's life of the trainer (not reset by a rollback).</summary>
    public long BadSteps { get; private set; }

    public int ConsecutiveBadSteps { get; private set; }

    /// <summary>The step index of the first bad step of the current streak; null while the last step was good.</summary>
    public long? StreakStartedAt { get; private set; }

    /// <summary>True once <see cref="MaxConsecutiveBadSteps"/> bad steps came in a row: the host must roll back.</summary>
    public bool Diverging => ConsecutiveBadSteps >= MaxConsecutiveBadSteps;

    public static bool IsFinite(double loss, double gradientNorm) => double.IsFinite(loss) && double.IsFinite(gradientNorm);

    /// <returns>True when the step is good and the optimizer may step.</returns>
    public bool Record(long step, double loss, double gradientNorm)
    {
        if (IsFinite(loss, gradientNorm))
        {
            ConsecutiveBadSteps = 0;
            StreakStartedAt = null;
            return true;
        }
        BadSteps++;
        ConsecutiveBadSteps++;
        StreakStartedAt ??= step;
        return false;
    }

    /// <summary>Carries the count of a trainer that a rollback replaced.</summary>
    public void Carry(long badSteps) => BadSteps += badSteps;

    /// <summary>After a restore from a checkpoint: the streak is over (the total count stays).</summary>
    public void Reset()
    {
        ConsecutiveBadSteps = 0;
        StreakStartedAt = null;
    }

    public string Describe(string what) =>
        $"{ConsecutiveBadSteps} consecutive {what} steps with a non-finite loss or gradient norm (from step {StreakStartedAt})";

    /// <summary>The L2 norm of all gradients together (what clip_grad_norm_ computes), without scaling them.</summary>
    public static double GradientNorm(IEnumerable<TorchSharp.Modules.Parameter> parameters)
    {
        using var scope = NewDisposeScope();
        var norms = parameters.Select(p => p.grad).Where(g => g is not null).Select(g => g!.detach().norm().to_type(ScalarType.Float64)).ToList();
        return norms.Count == 0 ? 0 : stack(norms).norm().item<double>();
    }

    /// <summary>The name of the first parameter or buffer of <paramref name="module"/> that holds NaN or infinity, or null.</summary>
    public static string? FirstNonFinite(nn.Module module)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var (name, tensor) in module.named_parameters().Select(p => (p.name, (Tensor)p.parameter)).Concat(module.named_buffers()))
        {
            if (!tensor.is_floating_point()) continue;
            if (!isfinite(tensor).all().item<bool>()) return name;
        }
        return null;
    }

    /// <summary>Throws <see cref="NonFiniteTensorException"/> unless every floating-point tensor of every module is finite.</summary>
    public static void ThrowIfNonFinite(string what, IEnumerable<(string Prefix, nn.Module Module)> modules)
    {
        foreach (var (prefix, module) in modules)
        {
            if (FirstNonFinite(module) is { } name) throw new NonFiniteTensorException(what, $"{prefix}.{name}");
        }
    }
}

/// <summary>
/// How many rollbacks a run may still make. A rollback that is followed by a committed checkpoint past the step where
/// the failure began counts as recovered and refills the budget; <see cref="Spend"/> throws
/// <see cref="TrainingDivergedException"/> once <c>maxRollbacks</c> rollbacks came without such progress.
/// </summary>
public sealed class RollbackBudget(string job, int maxRollbacks)
{
    public int Rollbacks { get; private set; }
    public int TotalRollbacks { get; private set; }
    public long? FailedAt { get; private set; }

    public void Spend(long step, long failedAt, string reason)
    {
        if (Rollbacks >= maxRollbacks)
            throw new TrainingDivergedException(job, step, $"{reason}; gave up after {Rollbacks} rollback(s) to the last good checkpoint");
        Rollbacks++;
        TotalRollbacks++;
        FailedAt = FailedAt is { } f ? Math.Min(f, failedAt) : failedAt;
    }

    /// <summary>A checkpoint of a healthy trainer was committed at <paramref name="step"/>.</summary>
    public void Committed(long step)
    {
        if (FailedAt is { } f && step > f)
        {
            Rollbacks = 0;
            FailedAt = null;
        }
    }
}

/// <summary>
/// Test-only fault injection through the real processes: <c>ISLANDS_FAULT_NAN_FROM_STEP</c> makes the loss (and so every
/// gradient) NaN from a step on. Its value is a step (every job of the process) or <c>job=step</c> pairs separated by
/// <c>;</c> (e.g. <c>expert:1=40;router=10</c>). Never set it outside tests.
/// </summary>
public static class FaultInjection
{
    public const string NanFromStepVariable = "ISLANDS_FAULT_NAN_FROM_STEP";

    private static readonly AsyncLocal<string?> Override = new();

    public static long? NanFromStep(string job) => Parse(Override.Value ?? Environment.GetEnvironmentVariable(NanFromStepVariable), job);

    /// <summary>
    /// Sets the fault for the calling flow only (an in-process test), as if the variable held <paramref name="value"/>;
    /// other tests running in parallel in the same process are not affected. Dispose to clear it.
    /// </summary>
    public static IDisposable Scope(string value)
    {
        var previous = Override.Value;
        Override.Value = value;
        return new Restore(() => Override.Value = previous);
    }

    private sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }

    public static long? Parse(string? value, string job)
    {
        if (string.IsNullOrWhiteSpace(value)) return null;
        foreach (var part in value.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = part.LastIndexOf('=');
            var (name, number) = eq < 0 ? (null, part) : (part[..eq], part[(eq + 1)..]);
            if (name is not null && name != job) continue;
            if (long.TryParse(number, NumberStyles.None, CultureInfo.InvariantCulture, out var step)) return step;
            throw new ConfigException(NanFromStepVariable, $"'{value}' must be a step or job=step pairs separated by ';'");
        }
        return null;
    }
}

/// <summary>The rollback that the CLI's runs share (an island's job actor chooses its checkpoint from the journal instead).</summary>
public static class Rollback
{
    /// <summary>
    /// Spends one rollback (throwing <see cref="TrainingDivergedException"/> when none is left) and restores the newest
    /// checkpoint that verifies, or reopens the run from scratch when there is none; returns the trainer to go on with.
    /// </summary>
    public static T ToLastGood<T>(T trainer, RollbackBudget budget, string reason, long failedAt, Func<T> reopen, Action<string>? log)
        where T : class, IChunkedTrainer
    {
        budget.Spend(trainer.Step, failedAt, reason);
        var newest = trainer.Checkpoints.NewestValid();
        var target = newest is { } n ? $"step {n.Manifest.Step} ({n.Directory})" : "the start (no checkpoint yet)";
        log?.Invoke($"{reason}; rolling back (rollback {budget.Rollbacks} of {trainer.MaxRollbacks}) to {target}");
        if (newest is { } found)
        {
            trainer.Restore(found.Directory);
            return trainer;
        }
        var badSteps = trainer.Guard.BadSteps;
        trainer.Dispose();
        var fresh = reopen();
        fresh.Guard.Carry(badSteps);
        return fresh;
    }

    /// <summary>Why the trainer asks for a rollback and the step its trouble began at, or null when it is healthy.</summary>
    public static (string Reason, long FailedAt)? Needed(IChunkedTrainer trainer, string job) =>
        trainer.Guard.Diverging ? (trainer.Guard.Describe(job), trainer.Guard.StreakStartedAt ?? trainer.Step) : null;
}
