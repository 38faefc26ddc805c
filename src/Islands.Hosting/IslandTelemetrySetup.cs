using Islands.Actors;
using Islands.Actors.Serving;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Islands.Hosting;

/// <summary>OpenTelemetry for a node: its meters and activity sources, exported to the console or over OTLP.</summary>
public static class IslandTelemetrySetup
{
    public static void Add(IServiceCollection services, IslandNodeSettings settings) =>
        Add(services, settings.TelemetryExporter, settings.OtlpEndpoint, "islands-node", $"{settings.Island}@{settings.Hostname}:{settings.Port}",
            [new("islands.island", settings.Island)], [IslandTelemetry.Name], aspNetCore: false);

    public static void Add(IServiceCollection services, ServingNodeSettings settings) =>
        Add(services, settings.TelemetryExporter, settings.OtlpEndpoint, "islands-serving", $"{settings.Name}@{settings.Hostname}:{settings.Port}",
            [new("islands.serving", settings.Name)], [ServingTelemetry.Name], aspNetCore: true);

    private static void Add(IServiceCollection services, string exporter, string endpoint, string service, string instance,
        KeyValuePair<string, object>[] attributes, string[] names, bool aspNetCore)
    {
        if (exporter == "none") return;
        services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(service, serviceInstanceId: instance).AddAttributes(attributes))
            .WithMetrics(m =>
            {
                m.AddMeter(names);
                if (aspNetCore) m.AddAspNetCoreInstrumentation();
                if (exporter == "console") m.AddConsoleExporter();
                else m.AddOtlpExporter(o => o.Endpoint = new Uri(endpoint));
            })
            .WithTracing(t =>
            {
                t.AddSource(names);
                // The HTTP request's span is the root; serving's messages carry its context on to the router and samplers.
                if (aspNetCore) t.AddAspNetCoreInstrumentation(o => o.Filter = c => !c.Request.Path.StartsWithSegments("/health"));
                if (exporter == "console") t.AddConsoleExporter();
                else t.AddOtlpExporter(o => o.Endpoint = new Uri(endpoint));
            });
    }
}
