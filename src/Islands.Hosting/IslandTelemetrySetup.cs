using Islands.Actors;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Islands.Hosting;

/// <summary>OpenTelemetry for a node: the island's meter and activity source, exported to the console or over OTLP.</summary>
public static class IslandTelemetrySetup
{
    public static void Add(IServiceCollection services, IslandNodeSettings settings)
    {
        if (settings.TelemetryExporter == "none") return;
        services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("islands-node", serviceInstanceId: $"{settings.Island}@{settings.Hostname}:{settings.Port}")
                .AddAttributes([new("islands.island", settings.Island)]))
            .WithMetrics(m =>
            {
                m.AddMeter(IslandTelemetry.Name);
                if (settings.TelemetryExporter == "console") m.AddConsoleExporter();
                else m.AddOtlpExporter(o => o.Endpoint = new Uri(settings.OtlpEndpoint));
            })
            .WithTracing(t =>
            {
                t.AddSource(IslandTelemetry.Name);
                if (settings.TelemetryExporter == "console") t.AddConsoleExporter();
                else t.AddOtlpExporter(o => o.Endpoint = new Uri(settings.OtlpEndpoint));
            });
    }
}
