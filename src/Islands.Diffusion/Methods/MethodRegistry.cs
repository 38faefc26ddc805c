using Islands.Diffusion.Training;

namespace Islands.Diffusion.Methods;

/// <summary>
/// The methods a process knows by name. The built-in ones (expert, monolith, router) are registered at start; a later
/// capability registers its own method here and the islands train it without any change to the actors.
/// </summary>
public sealed class MethodRegistry
{
    private readonly List<TrainingMethod> methods = [];

    public static MethodRegistry Default { get; } = new([new ExpertMethod(), new MonolithMethod(), new RouterMethod(),
        Distillation.DistillMethod.Sds, Distillation.DistillMethod.Nfsd, Distillation.DistillMethod.Bridge]);

    public MethodRegistry(IEnumerable<TrainingMethod> methods)
    {
        foreach (var m in methods) Register(m);
    }

    public IReadOnlyList<TrainingMethod> Methods
    {
        get
        {
            lock (methods) return [.. methods];
        }
    }

    public void Register(TrainingMethod method)
    {
        lock (methods)
        {
            if (methods.Any(m => m.Name == method.Name)) throw new ArgumentException($"a method named '{method.Name}' is already registered");
            methods.Add(method);
        }
    }

    /// <summary>The method of a job name ("expert:3", "router") and its argument.</summary>
    public (TrainingMethod Method, string? Argument) Resolve(string job)
    {
        var colon = job.IndexOf(':');
        var name = colon < 0 ? job : job[..colon];
        var argument = colon < 0 ? null : job[(colon + 1)..];
        var method = Methods.FirstOrDefault(m => m.Name == name)
            ?? throw new ConfigException("job",
                $"'{job}' names no method; registered: {string.Join(", ", Methods.Select(m => m.Name))} (expert takes :K, a partition index)");
        return (method, argument);
    }

    /// <summary>The job a config describes: its method (the config's "job") and its name.</summary>
    public TrainingJob JobFor(IMethodConfig config)
    {
        var (method, _) = Resolve(config.Job);
        if (!method.ConfigType.IsInstanceOfType(config))
            throw new ConfigException("job", $"method {method.Name} takes a {method.ConfigType.Name}, not a {config.GetType().Name}");
        return new TrainingJob(method.JobName(config), method, config);
    }
}
