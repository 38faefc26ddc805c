namespace Islands.Diffusion;

/// <summary>Base of every error that Islands reports to a user as one line: the message names the file, field or value and says why.</summary>
public class IslandsException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>An input file or folder is not what it claims to be (bad magic number, truncated, mismatched counts, unreadable image).</summary>
public sealed class DataFormatException(string path, string problem, Exception? inner = null)
    : IslandsException($"{path}: {problem}", inner)
{
    public string Path { get; } = path;
}

/// <summary>A configuration value or command option is invalid.</summary>
public sealed class ConfigException(string field, string problem) : IslandsException($"{field}: {problem}")
{
    public string Field { get; } = field;

    /// <summary>Throws for the first of a Validate() method's "field: problem" messages, if there is one.</summary>
    public static void ThrowFirst(IEnumerable<string> errors)
    {
        var first = errors.FirstOrDefault();
        if (first is null) return;
        var colon = first.IndexOf(':');
        throw colon < 0 ? new ConfigException("config", first) : new ConfigException(first[..colon], first[(colon + 1)..].TrimStart());
    }
}

/// <summary>A checkpoint is missing, corrupt (hash mismatch) or of an incompatible schema.</summary>
public sealed class CheckpointException(string path, string problem, Exception? inner = null)
    : IslandsException($"{path}: {problem}", inner)
{
    public string Path { get; } = path;
}

/// <summary>
/// A training job kept producing non-finite losses or gradients: it skipped its bad steps, rolled back to its last good
/// checkpoint as often as allowed, and still failed. The message names the job, the step and the reason.
/// </summary>
public sealed class TrainingDivergedException(string job, long step, string reason)
    : IslandsException($"{job}: training diverged at step {step}: {reason}")
{
    public string Job { get; } = job;
    public long Step { get; } = step;
    public string Reason { get; } = reason;
}

/// <summary>A tensor that was about to be committed, published or served holds NaN or infinity.</summary>
public sealed class NonFiniteTensorException(string what, string tensor)
    : IslandsException($"{what}: tensor '{tensor}' is not finite (NaN or infinity); refusing it")
{
    public string Tensor { get; } = tensor;
}
