using Islands.Diffusion.Partitioning;
using Islands.Diffusion.Routing;
using Islands.Diffusion.Training;
using static TorchSharp.torch;

namespace Islands.Diffusion.Methods;

/// <summary>The router p(partition | x_t, t, c) that combines the experts at sampling time.</summary>
public sealed class RouterMethod : TrainingMethod
{
    public override string Name => "router";
    public override string Description => "the router p(partition | x_t, t, class) that weights the experts at every sampling step";
    public override Type ConfigType => typeof(RouterConfig);
    public override IMethodConfig Defaults => new RouterConfig();

    /// <summary>Unless it is set, the router has as many experts as its partition file has partitions.</summary>
    public override IMethodConfig Configure(IMethodConfig config, string? argument, Func<string, bool> isSet)
    {
        var router = As<RouterConfig>(base.Configure(config, argument, isSet));
        if (isSet("expertCount") || !File.Exists(router.PartitionsFile)) return router;
        return router with { ExpertCount = PartitionFile.Load(router.PartitionsFile).K };
    }

    public override int ChunkSteps(IMethodConfig config) => 50;

    public override IChunkedTrainer Open(IMethodConfig config, string runDirectory, Action<string>? log = null, Device? device = null) =>
        TrainingJob.OpenRouter(As<RouterConfig>(config), runDirectory);
}
