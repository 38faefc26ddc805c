namespace Islands.Diffusion.Numerics;

/// <summary>One known-answer comparison: the largest error of output and gradients relative to the fp64 reference's magnitude.</summary>
public sealed record NumericsCheck(string Policy, string Check, string Precision, double RelativeError, double Tolerance)
{
    public bool Passed => double.IsFinite(RelativeError) && RelativeError <= Tolerance;
}

/// <summary>What the start-up self-test found on this CPU and which kernel paths it chose.</summary>
public sealed record NumericsReport(
    string Cpu,
    IReadOnlyList<string> CpuFeatures,
    NumericsPolicy Chosen,
    IReadOnlyList<NumericsCheck> Checks,
    double Seconds,
    string? Fault)
{
    public IEnumerable<NumericsCheck> Failures => Checks.Where(c => !c.Passed);

    /// <summary>Whether this CPU computes bf16 in hardware (<see cref="CpuInfo.Bf16Native"/>).</summary>
    public bool Bf16Native => CpuInfo.Bf16Native(CpuFeatures);

    /// <summary>The short form that status pages, --json results and benchmarks carry.</summary>
    public NumericsStatus Status => new(Cpu, CpuFeatures, Chosen.Name, Chosen.Bf16Trusted,
        Failures.Select(f => $"{f.Policy}: {f.Check} {f.Precision}").ToList(), Math.Round(Seconds, 3), Summary);

    /// <summary>The one line logged at start-up: what was wrong (if anything), what was chosen, what it cost.</summary>
    public string Summary
    {
        get
        {
            var failed = Failures.ToList();
            var found = failed.Count == 0
                ? "every check passed"
                : string.Join("; ", failed.GroupBy(f => f.Policy).Select(g =>
                    $"{g.Key} wrong in {string.Join(", ", g.Take(3).Select(f => $"{f.Check} {f.Precision} (error {Format(f.RelativeError)})"))}" +
                    $"{(g.Count() > 3 ? $" and {g.Count() - 3} more" : "")}"));
            var bf16 = !Chosen.Bf16Trusted ? "bf16 untrusted, bf16 runs compute in fp32"
                : Bf16Native ? "bf16 ok"
                : "bf16 ok but not native (no avx512_bf16, no amx): generic kernels, far slower than fp32 here";
            return $"numerics self-test on {Cpu} [{string.Join(' ', CpuFeatures)}]: {found}; chose {Chosen.Name}, {bf16} ({Seconds:F2} " +
                $"s){(Fault is null ? "" : $"; injected fault {Fault}")}";
        }
    }

    private static string Format(double e) => double.IsFinite(e) ? e.ToString("G2", System.Globalization.CultureInfo.InvariantCulture) : "non-finite";
}

/// <summary>What /status, --json outputs and benchmarks report of the self-test: the CPU, the chosen kernel path, what failed.</summary>
public sealed record NumericsStatus(string Cpu, IReadOnlyList<string> CpuFeatures, string Path, bool Bf16Trusted, IReadOnlyList<string> FailedChecks,
    double SelfTestSeconds, string Summary);
