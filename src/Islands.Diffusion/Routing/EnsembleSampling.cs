using Islands.Diffusion.Benchmarks;
using Islands.Diffusion.Configs;
using Islands.Diffusion.Data;
using Islands.Diffusion.Modules;
using Islands.Diffusion.Partitioning;
using Islands.Diffusion.Sampling;
using static TorchSharp.torch;

namespace Islands.Diffusion.Routing;

public sealed record EnsembleCosts(double EvaluationsPerImage, double RouterShareOfCost, long[] ExpertEvaluations, long RouterEvaluations,
    double RouterGflopPerImage, double[] ExpertGflopPerImage);

public sealed record EnsembleSamplingResult(Tensor Samples, EnsembleCosts Costs, RoutingTrace? Trace);

/// <summary>Wires loaded experts and a router (learned run directory, or "gaussian") into one routed sampling run.</summary>
public static class EnsembleSampling
{
    public static EnsembleSamplingResult Run(IReadOnlyList<UNet> experts, IReadOnlyList<TrainConfig> configs, string routerSpec,
        RoutingStrategy strategy,
        IReadOnlyList<int> unavailable, bool trace, int count, long[]? classes, SamplerOptions options, (long C, long H, long W) shape,
        Action<string>? log = null, string precision = "fp32",
        long[]? oracleAssignments = null)
    {
        var partitionsFile = configs[0].PartitionsFile;
        for (var i = 0; i < configs.Count; i++)
        {
            if (configs[i].Expert != i)
                throw new ConfigException("experts",
                    $"expert {i} was trained as expert {configs[i].Expert?.ToString() ?? "(monolith)"}; " +
                    "list the experts in partition order 0..K-1");
            if (configs[i].PartitionsFile != partitionsFile)
                throw new ConfigException("experts",
                    $"expert {i} was trained on {configs[i].PartitionsFile}, expert 0 on {partitionsFile}: " +
                    "experts of one ensemble must share a partition file");
        }
        foreach (var u in unavailable)
            if (u < 0 || u >= experts.Count) throw new ConfigException("unavailable", $"{u} is outside 0..{experts.Count - 1}");
        IRouter router;
        double routerFlops;
        IDisposable? owned;
        if (routerSpec == "gaussian")
        {
            var data = CanonicalDataset.Load(configs[0].DataDirectory);
            var gaussian = GaussianRouter.Fit(data.Train, PartitionFile.Load(partitionsFile!));
            router = gaussian;
            owned = gaussian;
            routerFlops = 10.0 * gaussian.ExpertCount * shape.C * shape.H * shape.W;
            log?.Invoke("routing with the training-free Gaussian router");
        }
        else
        {
            var (net, routerConfig, _) = RouterRun.Load(routerSpec, log);
            if (Path.GetFullPath(routerConfig.PartitionsFile) != Path.GetFullPath(partitionsFile!))
                throw new ConfigException("router", $"was trained on {routerConfig.PartitionsFile}, the experts on {partitionsFile}");
            router = net;
            owned = net;
            using var probe = randn(1, shape.C, shape.H, shape.W);
            routerFlops = FlopCounter.ForwardFlops(net, () => net.Posterior(probe, full(1, 0.5f), zeros(1, dtype: ScalarType.Int64)).Dispose());
        }
        try
        {
            var available = Enumerable.Range(0, experts.Count).Select(i => !unavailable.Contains(i)).ToArray();
            var routingTrace = trace ? new RoutingTrace() : null;
            var expertFlops = experts.Select((e, i) => TrainBenchmark.CountForwardFlopsPerImage(e, configs[i].ModelOrDefault)).ToArray();
            var velocityModels = experts.Select(e => Bfloat16Velocity.ForPrecision(e, precision)).ToList();
            var ensemble = new ExpertEnsemble(velocityModels, router, strategy, available, routingTrace,
                options.Seed) { OracleAssignments = oracleAssignments };
            var samples = FlowSampler.Sample(ensemble.Field(options.Cfg), count, classes, options, shape);
            var expertCost = ensemble.ExpertRowEvaluations.Select((rows, i) => rows * expertFlops[i]).Sum();
            var routerCost = ensemble.RouterRowEvaluations * routerFlops;
            var costs = new EnsembleCosts(ensemble.ExpertRowEvaluations.Sum() / (double)count, routerCost / (routerCost + expertCost),
                ensemble.ExpertRowEvaluations.ToArray(), ensemble.RouterRowEvaluations, routerFlops / 1e9,
                expertFlops.Select(f => f / 1e9).ToArray());
            return new EnsembleSamplingResult(samples, costs, routingTrace);
        }
        finally
        {
            owned?.Dispose();
        }
    }
}
