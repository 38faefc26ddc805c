using Islands.Diffusion.Modules;
using Islands.Diffusion.Routing;
using Islands.Diffusion.Sampling;
using Islands.Diffusion.Serving;

namespace Islands.Diffusion.Distillation;

/// <summary>
/// The islands' ensemble as a prior: every expert and the router a store publishes (hashes verified before loading),
/// routed by a strategy through the one routed step, as an unguided velocity field.
/// </summary>
public sealed class EnsemblePrior : IDistillationPrior
{
    private readonly List<ServedExpert> experts;
    private readonly RouterNet router;

    private EnsemblePrior(List<ServedExpert> experts, RouterNet router, ExpertEnsemble ensemble, int classes)
    {
        this.experts = experts;
        this.router = router;
        Ensemble = ensemble;
        ClassCount = classes;
    }

    public ExpertEnsemble Ensemble { get; }
    /// <summary>The routed ensemble's velocity field, guided at the given scale (1: unguided).</summary>
    public VelocityField Field(double guidance = 1) => Ensemble.Field(guidance);
    public (long C, long H, long W) Shape => experts[0].Config.Shape;
    public int ClassCount { get; }

    public long? DegradedLabel(long c) => Ensemble.DegradedClassCount is { } count ? Modules.UNet.DegradedLabel(count, c) : null;

    public static EnsemblePrior Load(string store, string strategy)
    {
        var scan = PublishedModels.Scan(store);
        if (scan.Experts.Count == 0 || scan.Router is null)
            throw new ConfigException("store", $"{store}: needs published experts and a router (found {scan.Experts.Count} experts, " +
                $"{(scan.Router is null ? "no" : "a")} router)");
        var routing = RoutingStrategy.Parse(strategy);
        var experts = new List<ServedExpert>();
        RouterNet? loadedRouter = null;
        try
        {
            foreach (var e in scan.Experts.OrderBy(e => e.Expert)) experts.Add(ServedModels.LoadExpert(e, "fp32"));
            if (experts.Select(e => e.Config.Shape).Distinct().Count() > 1)
                throw new ConfigException("store", $"{store}: the experts were trained on images of different shapes");
            var (router, _) = ServedModels.LoadRouter(scan.Router, experts[0].ImageFloats);
            loadedRouter = router;
            // An expert that is not published (or was refused) is left out of every step, as serving leaves it out.
            var byIndex = experts.ToDictionary(e => e.Published.Expert ?? -1, e => (IVelocityModel)e.Model);
            var models = Enumerable.Range(0, router.ExpertCount).Select(k => byIndex.GetValueOrDefault(k) ?? new MissingExpert(k)).ToList();
            var available = Enumerable.Range(0, router.ExpertCount).Select(byIndex.ContainsKey).ToList();
            var degraded = experts.All(e => e.Config.DegradedCondition);
            var ensemble = new ExpertEnsemble(models, router, routing, available)
            {
                DegradedClassCount = degraded ? experts[0].Config.ClassCount : null,
            };
            return new EnsemblePrior(experts, router, ensemble, ServedModels.Classes(scan.Experts[0]).Count);
        }
        catch
        {
            foreach (var e in experts) e.Dispose();
            loadedRouter?.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var e in experts) e.Dispose();
        router.Dispose();
    }
}

/// <summary>The place of an expert the store does not offer: marked unavailable, so routing never asks it.</summary>
internal sealed class MissingExpert(int expert) : IVelocityModel
{
    public long NullClass => 0;

    public TorchSharp.torch.Tensor Velocity(TorchSharp.torch.Tensor x, TorchSharp.torch.Tensor t, TorchSharp.torch.Tensor classes) =>
        throw new InvalidOperationException($"expert {expert} is not published; routing must leave it out");
}
