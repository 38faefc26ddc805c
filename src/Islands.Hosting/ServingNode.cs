using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Hosting;
using Akka.Cluster.Hosting.SBR;
using Akka.Cluster.Sharding;
using Akka.Cluster.Tools.Client;
using Akka.Configuration;
using Akka.Hosting;
using Akka.Remote.Hosting;
using Islands.Actors;
using Islands.Actors.Serving;
using Islands.Hosting.Viewer;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Http.Resilience;
using Microsoft.Extensions.Logging;

namespace Islands.Hosting;

/// <summary>Registry key of the node's model registry actor.</summary>
public sealed class ModelRegistryKey;

/// <summary>
/// Wires one serving node: an Akka.NET cluster member of the serving cluster hosting the sharded sampler (per expert)
/// and router (per ensemble) regions with a distributed-data state store, the node's model registry (also offered to
/// islands through the cluster client receptionist), and the HTTP API of <see cref="GenerationApi"/>.
/// </summary>
public static class ServingNode
{
    public const string RegistryName = "model-registry";

    public static WebApplication Build(ServingNodeSettings settings, Action<ILoggingBuilder>? logging = null)
    {
        var builder = NodeHost.CreateBuilder(settings.HttpHostname, settings.HttpPort, TimeSpan.FromSeconds(30), logging,
            settings.Viewer is { } viewer ? $"http://{viewer.Hostname}:{viewer.Port}" : null);
        // The API enforces max-body-bytes itself (and drains what is over it, so the 413 reaches the client); Kestrel's cap
        // only stops bodies far beyond it.
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = Math.Max(1 << 20, settings.MaxBodyBytes * 4L));
        builder.Services.AddSingleton(settings);
        IslandTelemetrySetup.Add(builder.Services, settings);
        builder.Services.AddOpenApi();
        var authentication = builder.Services
            .AddAuthentication(settings.Viewer is null ? ApiKeyAuthentication.SchemeName : ViewerEndpoints.KeyOrSessionScheme)
            .AddScheme<ApiKeyOptions, ApiKeyAuthentication>(ApiKeyAuthentication.SchemeName, o =>
            {
                o.KeyDigests = [.. settings.ApiKeys.Select(ApiKeyAuthentication.Digest)];
                o.AllowAnonymous = settings.AllowAnonymous;
            });
        if (settings.Viewer is not null)
        {
            ViewerEndpoints.AddAuthentication(authentication);
            ViewerEndpoints.AddServices(builder.Services);
        }
        builder.Services.AddAuthorization(o => o.FallbackPolicy = new AuthorizationPolicyBuilder().RequireAuthenticatedUser().Build());
        builder.Services.AddSingleton(new GenerationSlots(settings.MaxInFlight));
        builder.Services.AddSingleton(new AsyncGenerations(settings.FailedRetention));
        builder.Services.AddSingleton<ServedClasses>();
        builder.Services.AddHealthChecks();
        builder.Services.AddAkka(settings.SystemName, (akka, _) => ConfigureAkka(akka, settings));
        settings.Formation.AddServices(builder.Services);
        if (settings.Sources.Enabled)
        {
            // The node's own cache: it exists from the start, so the registry's first scan finds an empty store, not none.
            Directory.CreateDirectory(settings.Serving.Store);
            // Timeouts up to the response headers (PublicationMirror bounds a stalled body itself), one quick retry (the next
            // round is the real one), and a circuit breaker per island endpoint, so that a dead island opens only its own.
            builder.Services.AddHttpClient(PublicationMirror.ClientName)
                .AddStandardResilienceHandler(o =>
                {
                    o.Retry.MaxRetryAttempts = 1;
                    o.Retry.Delay = TimeSpan.FromMilliseconds(200);
                    o.AttemptTimeout.Timeout = TimeSpan.FromSeconds(10);
                    o.TotalRequestTimeout.Timeout = TimeSpan.FromSeconds(30);
                })
                .SelectPipelineByAuthority();
            builder.Services.AddSingleton<PublicationMirror>();
            builder.Services.AddHostedService(sp => sp.GetRequiredService<PublicationMirror>());
        }

        var app = builder.Build();
        RequestGuards.Use(app);
        app.UseAuthentication();
        app.UseAuthorization();
        app.MapNodeHealth().AllowAnonymous();
        ClusterFormation.MapSeedNodes(app).AllowAnonymous();
        app.MapOpenApi();
        GenerationApi.Map(app, settings);
        var v1 = app.MapGroup("/v1");
        ScoreApi.Map(v1);
        DistillationApi.Map(v1, settings);
        if (settings.Viewer is not null) ViewerEndpoints.Map(app, settings);
        return app;
    }

    /// <summary>The viewer's address once the node has started (null when the viewer is off).</summary>
    public static string? ViewerAddress(WebApplication app) => 
        app.Services.GetService<ViewerEndpoints.Listener>() is { } listener ? listener.Address + ViewerEndpoints.Route + "/" : null;

    private static void ConfigureAkka(AkkaConfigurationBuilder akka, ServingNodeSettings settings)
    {
        // Lease-majority when a database holds the lease: serving survives two of three nodes failing together.
        akka.WithIslandsNode(new NodeWiringOptions(settings, ServingNodeSettings.Role, settings.SplitBrainLease,
            settings.SystemName + "-split-brain"));
        akka.WithClusterClientReceptionist(role: ServingNodeSettings.Role);
        akka.WithActors((system, registry) =>
        {
            var models = system.ActorOf(ModelRegistry.Props(settings.Serving), RegistryName);
            registry.Register<ModelRegistryKey>(models);
            ClusterClientReceptionist.Get(system).RegisterService(models);
        });
        var options = new ShardOptions
        {
            Role = ServingNodeSettings.Role,
            StateStoreMode = StateStoreMode.DData,
            RememberEntities = false,
            PassivateIdleEntityAfter = settings.PassivateAfter,
            HandOffStopMessage = PoisonPill.Instance,
        };
        akka.WithShardRegion<SamplerActor>(SamplerActor.RegionName,
            (_, registry, _) => id => SamplerActor.Props(id, settings.Serving, registry.Get<ModelRegistryKey>()),
            new SamplerActor.MessageExtractor(settings.Shards), options);
        akka.WithShardRegion<EnsembleRouterActor>(EnsembleRouterActor.RegionName,
            (_, registry, _) => id => EnsembleRouterActor.Props(id, settings.Serving, registry.Get<ModelRegistryKey>(), registry.Get<SamplerActor>()),
            new EnsembleRouterActor.MessageExtractor(settings.Shards), options);
        akka.WithActors((system, registry) =>
        {
            var models = registry.Get<ModelRegistryKey>();
            var routers = registry.Get<EnsembleRouterActor>();
            var jobs = system.ActorOf(DistillationsActor.Props(DistillationApi.Root(settings), (strategy, counters, log, cancel) =>
                ServedPrior.Connect(models, routers, settings.Serving, strategy, counters, log, cancel)), "distillations");
            registry.Register<DistillationsKey>(jobs);
        });
    }
}
