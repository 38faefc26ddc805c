using Akka.Event;
using Islands.Diffusion;
using Islands.Diffusion.Routing;
using Islands.Diffusion.Serving;

namespace Islands.Actors.Serving;

/// <summary>
/// The published models a router entity serves: the registry's latest snapshot, the router network it loaded (hashes
/// verified) and the sampler over it, and why it cannot serve yet. A newer router is loaded only between generations.
/// </summary>
internal sealed class EnsembleModels(string ensemble, ServingSettings settings, ILoggingAdapter log) : IDisposable
{
    private RouterNet? router;

    public PublishedModelsSnapshot? Snapshot { get; private set; }
    public PublishedModel? Router { get; private set; }
    public ContinuousSampler? Sampler { get; private set; }
    /// <summary>Why no generation can be served now, or null.</summary>
    public string? NotReady { get; private set; } = "waiting for the model registry";

    /// <summary>A newer router than the one loaded has been published.</summary>
    public bool RouterOutdated => Snapshot is not null && Router?.ManifestSha256 != Snapshot.Router?.ManifestSha256;

    /// <param name="idle">No generation is in flight, so the router may be swapped.</param>
    public void Update(PublishedModelsSnapshot next, bool idle)
    {
        Snapshot = next;
        if (next.Router is null) NotReady = $"no router has been published in {next.Store} yet";
        else if (next.Experts.Count == 0) NotReady = $"no expert has been published in {next.Store} yet";
        else if (Router?.ManifestSha256 != next.Router.ManifestSha256 && idle) Load(next);
        else if (router is not null) NotReady = null;
    }

    private void Load(PublishedModelsSnapshot next)
    {
        try
        {
            var shape = ServedModels.ImageShape(next.Experts[0]);
            if (settings.FrameProblem(shape.C * shape.H * shape.W, ServingSettings.MaxImagesPerRequest) is { } tooBig)
            {
                NotReady = tooBig;
                log.Error($"ensemble {ensemble}: {tooBig}");
                return;
            }
            var (net, config) = ServedModels.LoadRouter(next.Router!, shape.C * shape.H * shape.W);
            router?.Dispose();
            router = net;
            Router = next.Router;
            Sampler = new ContinuousSampler(net, shape) { DegradedClassCount = ServedModels.DegradedClassCount(next.Experts) };
            NotReady = null;
            log.Info($"ensemble {ensemble}: router {next.Router!.CheckpointDirectory} (step {next.Router.Step}) over {config.ExpertCount} experts, " +
                     $"images {shape.C}x{shape.H}x{shape.W}");
        }
        catch (IslandsException e)
        {
            NotReady = $"the published router cannot be loaded: {e.Message}";
            log.Error($"ensemble {ensemble}: {NotReady}");
        }
    }

    public void Dispose() => router?.Dispose();
}
