namespace Islands.Diffusion.Numerics;

/// <summary>
/// A deliberately wrong kernel result for testing the self-test's fallback: corrupts (with NaN) the results of the checks
/// that match, as if the kernel were broken. Read from ISLANDS_NUMERICS_FAULT as policy/precision/check-prefix, each part
/// '*' for any, e.g. "onednn/*/conv" (every convolution wrong on the direct oneDNN path) or "*/bf16/*" (bf16 wrong everywhere).
/// </summary>
public sealed record NumericsFault(string Policy, string Precision, string CheckPrefix)
{
    public const string Variable = "ISLANDS_NUMERICS_FAULT";

    public bool Matches(string policy, string precision, string check) =>
        (Policy == "*" || Policy == policy) && (Precision == "*" || Precision == precision)
        && (CheckPrefix == "*" || check.StartsWith(CheckPrefix, StringComparison.Ordinal));

    public override string ToString() => $"{Policy}/{Precision}/{CheckPrefix}";

    public static NumericsFault? FromEnvironment() => Parse(Environment.GetEnvironmentVariable(Variable));

    public static NumericsFault? Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        var parts = text.Split('/');
        if (parts.Length != 3 || parts.Any(string.IsNullOrWhiteSpace))
            throw new ConfigException(Variable, $"'{text}' must be policy/precision/check-prefix, e.g. onednn/*/conv");
        return new NumericsFault(parts[0], parts[1], parts[2]);
    }
}
