using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Islands.Hosting;

/// <summary>What every node's web host shares: its address, shutdown grace, JSON that writes NaN as null, single-line logs on stderr, and
/// <see cref="RequestGuards"/>.</summary>
internal static class NodeHost
{
    /// <param name="secondUrl">A second listener (the viewer's): the server lists its address after the first one's.</param>
    public static WebApplicationBuilder CreateBuilder(string hostname, int port, TimeSpan shutdownGrace, Action<ILoggingBuilder>? logging,
        string? secondUrl = null)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.WebHost.UseUrls(secondUrl is null ? [$"http://{hostname}:{port}"] : [$"http://{hostname}:{port}", secondUrl]);
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = shutdownGrace);
        // A NaN loss in a status or result is written as null: System.Text.Json would otherwise refuse it and answer 500.
        builder.Services.ConfigureHttpJsonOptions(o => Diffusion.IO.Json.WithFiniteNumbers(o.SerializerOptions));
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss ";
        });
        // Logs go to stderr like every islands command's, so stdout carries only results (--json stays parseable).
        builder.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        // A serving node polls every island endpoint every few seconds: a line per request and per resilience attempt
        // would bury everything else (PublicationMirror logs what it fetched and what failed).
        builder.Logging.AddFilter("System.Net.Http.HttpClient", LogLevel.Warning);
        builder.Logging.AddFilter("Polly", LogLevel.Critical);
        logging?.Invoke(builder.Logging);
        // Hosting's own request lines carry the query string (a key sent as ?api_key= with it), whatever an operator lowers
        // Microsoft.AspNetCore to: they stay off, and RequestGuards' request log (no query) takes their place.
        builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.Warning);
        RequestGuards.AddServices(builder.Services);
        return builder;
    }
}
