using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Hosting;
using Akka.Cluster.Hosting.SBR;
using Akka.Configuration;
using Akka.Hosting;
using Akka.Persistence.Sql.Hosting;
using Akka.Remote.Hosting;
using Islands.Actors;
using LinqToDB;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Islands.Hosting;

/// <summary>Registry key of the island's training-job singleton proxy.</summary>
public sealed class TrainingJobSingleton;

/// <summary>Registry key of the cluster client that reaches the serving clusters' receptionists.</summary>
public sealed class ServingClusterClient;

/// <summary>
/// Wires one island node: an Akka.NET cluster member (remoting, clustering with the keep-majority split-brain resolver,
/// SQL persistence, the island serializer) that may host the island's training-job singleton, plus an HTTP endpoint
/// with /status, /health/live, /health/ready and the island's publication (<see cref="PublicationEndpoints"/>), and OpenTelemetry. It holds no logic
/// of its own.
/// </summary>
public static class IslandNode
{
    public const string SingletonName = "training-job";

    public static WebApplication Build(IslandNodeSettings settings, Action<ILoggingBuilder>? logging = null)
    {
        Directory.CreateDirectory(settings.RunDirectory);
        var builder = NodeHost.CreateBuilder(settings.HttpHostname, settings.HttpPort, TimeSpan.FromSeconds(90), logging);
        builder.Services.AddSingleton(settings);
        IslandTelemetrySetup.Add(builder.Services, settings);
        builder.Services.AddHealthChecks();
        builder.Services.AddAkka(settings.SystemName, (akka, _) => ConfigureAkka(akka, settings));
        settings.Formation.AddServices(builder.Services);
        PublicationEndpoints.AddServices(builder.Services, settings.PublicationKeys);

        var app = builder.Build();
        RequestGuards.Use(app);
        app.UseAuthentication();
        app.UseAuthorization();
        app.MapNodeHealth();
        ClusterFormation.MapSeedNodes(app);
        app.MapGet("/status", async (ActorSystem system, IRequiredActor<TrainingJobSingleton> job, CancellationToken cancel) =>
            Results.Json(await IslandStatus.Collect(system, await job.GetAsync(cancel), settings, TimeSpan.FromSeconds(5), cancel)));
        // The viewer's: the job's loss curve and checkpoint timeline (its status says only where it stands).
        app.MapGet("/status/history", async (IRequiredActor<TrainingJobSingleton> job, CancellationToken cancel) =>
        {
            try
            {
                return Results.Json(await (await job.GetAsync(cancel)).Ask<JobHistory>(GetJobHistory.Instance, TimeSpan.FromSeconds(5), cancel));
            }
            catch (AskTimeoutException)
            {
                return Results.Problem(statusCode: 503, title: "Training job busy",
                    detail: "the training job did not answer within 5 s (the singleton may be moving to another node)");
            }
        });
        PublicationEndpoints.Map(app, settings.RunDirectory);
        return app;
    }

    /// <summary>The HTTP address Kestrel actually bound (port 0 picks a free one).</summary>
    public static string HttpAddress(WebApplication app) =>
        app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();

    private static void ConfigureAkka(AkkaConfigurationBuilder akka, IslandNodeSettings settings)
    {
        // Lease-majority in the island's PostgreSQL journal database; keep-majority for a one-node SQLite island.
        akka.WithIslandsNode(new NodeWiringOptions(settings, IslandNodeSettings.Role,
            settings.JournalProvider == "postgresql" ? settings.JournalConnectionString : null, $"islands-{settings.Island}-split-brain"));
        akka.WithSqlPersistence(settings.JournalConnectionString,
            settings.JournalProvider == "sqlite" ? ProviderName.SQLiteMS : ProviderName.PostgreSQL15, autoInitialize: true);
        if (settings.ServingContacts.Count > 0)
        {
            akka.WithClusterClient<ServingClusterClient>(settings.ServingContacts);
            akka.WithActors((system, registry) => system.ActorOf(PublicationAnnouncer.Props(registry.Get<ServingClusterClient>()),
                "publication-announcer"));
        }
        var lease = settings.JournalProvider == "postgresql" ? new JournalLeaseOption(settings.JournalConnectionString, settings.LeaseTimeToLive)
            : null;
        // The singleton options only name the lease's config path; its settings must be in the config already.
        lease?.Apply(akka);
        akka.WithSingleton<TrainingJobSingleton>(SingletonName, JobSupervisor.Props(settings.JobSettings), new ClusterSingletonOptions
        {
            Role = IslandNodeSettings.Role,
            TerminationMessage = StopTraining.Instance,
            // At most one trainer per island even when its cluster splits: the singleton runs only while its node holds the
            // island's lease in the shared journal database (SQLite is one node's, so there is nobody to share it with).
            LeaseImplementation = lease,
            LeaseRetryInterval = lease is null ? null : TimeSpan.FromSeconds(1),
        });
    }
}
