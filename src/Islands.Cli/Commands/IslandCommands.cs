using System.CommandLine;
using System.Net.Http.Json;
using Islands.Diffusion;
using Islands.Diffusion.Runtime;
using Islands.Hosting;
using Microsoft.Extensions.Hosting;

namespace Islands.Cli.Commands;

/// <summary><c>islands node</c> (one node of an island's Akka.NET cluster) and <c>islands status</c> (ask a node).</summary>
public static class IslandCommands
{
    public static Command Node(TextWriter stdout, TextWriter stderr)
    {
        var island = new Option<string?>("--island") { Description = "Island name (islands:island)" };
        var job = new Option<string?>("--job") { Description = "expert:K, monolith or router (islands:job)" };
        var config = new Option<string?>("--config")
        {
            Description = "JSON file over config/island.json (islands:training holds the training settings)"
        };
        var akkaConfig = new Option<string?>("--akka-config") { Description = "HOCON file of akka.* over hocon/island.conf (islands:akkaConfig)" };
        var hostname = new Option<string?>("--hostname") { Description = "Remoting address to bind (islands:hostname)" };
        var port = new Option<int?>("--port") { Description = "Remoting port; seed nodes need fixed ports (islands:port)" };
        var seeds = new Option<string?>("--seed-nodes")
        {
            Description = "Static seed nodes (tests; a restarted first seed can form a second cluster): use --contact-points"
        };
        var contacts = new Option<string?>("--contact-points")
        {
            Description = "HTTP endpoints host:port of every node of the island, this one included (islands:bootstrap:contactPoints)"
        };
        var httpPort = new Option<int?>("--http-port") { Description = "Port of /status and /health/* (islands:http:port)" };
        var store = new Option<string?>("--store")
        {
            Description = "Checkpoint store directory; the island's run is <store>/<island> (islands:store)"
        };
        var provider = new Option<string?>("--journal") { Description = "sqlite or postgresql (islands:journal:provider)" };
        var data = new Option<string?>("--data") { Description = "Dataset directory (islands:training:dataDirectory)" };
        var partitions = new Option<string?>("--partitions") { Description = "Partition file (islands:training:partitionsFile)" };
        var steps = new Option<int?>("--steps") { Description = "Training steps (islands:training:steps)" };
        var every = new Option<int?>("--checkpoint-every")
        {
            Description = "Steps between committed checkpoints (islands:training:checkpointEvery)"
        };
        var command = new Command("node", "Run one node of an island: an Akka.NET cluster member that trains the island's job as a cluster singleton")
        {
            island, job, config, akkaConfig, hostname, port, seeds, contacts, httpPort, store, provider, data, partitions, steps, every,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, async (ctx, parse, cancel) =>
        {
            var options = new Dictionary<string, string?>
            {
                ["islands:island"] = parse.GetValue(island),
                ["islands:akkaConfig"] = parse.GetValue(akkaConfig) is { } a ? Path.GetFullPath(a) : null,
                ["islands:job"] = parse.GetValue(job),
                ["islands:hostname"] = parse.GetValue(hostname),
                ["islands:port"] = parse.GetValue(port)?.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["islands:seedNodes"] = parse.GetValue(seeds),
                ["islands:bootstrap:contactPoints"] = parse.GetValue(contacts),
                ["islands:http:port"] = parse.GetValue(httpPort)?.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["islands:store"] = parse.GetValue(store),
                ["islands:journal:provider"] = parse.GetValue(provider),
                ["islands:training:dataDirectory"] = parse.GetValue(data) is { } d ? Path.GetFullPath(d) : null,
                ["islands:training:partitionsFile"] = parse.GetValue(partitions) is { } p ? Path.GetFullPath(p) : null,
                ["islands:training:steps"] = parse.GetValue(steps)?.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["islands:training:checkpointEvery"] = parse.GetValue(every)?.ToString(System.Globalization.CultureInfo.InvariantCulture),
            };
            var settings = IslandNodeConfig.Parse(IslandNodeConfig.Load(parse.GetValue(config), options));
            IslandsCli.InitTorch(parse);
            if (TorchSetup.ResolveDevice(parse.GetValue(CommonOptions.Device)!).type != TorchSharp.DeviceType.CPU)
                ctx.Log("note: island training runs on the CPU in this version");
            await using var app = IslandNode.Build(settings);
            await app.StartAsync(cancel);
            ctx.Log($"island {settings.Island}: node up; job {settings.Job.Name}; run directory {settings.RunDirectory}; status at " +
                $"{IslandNode.HttpAddress(app)}/status");
            using var stop = cancel.Register(() => app.Lifetime.StopApplication());
            await app.WaitForShutdownAsync(CancellationToken.None);
            return ExitCodes.Ok;
        }));
        return command;
    }

    public static Command Status(TextWriter stdout, TextWriter stderr)
    {
        var url = new Option<string>("--url") { Description = "HTTP address of any node of the island, e.g. http://127.0.0.1:8081", Required = true };
        var island = new Option<string?>("--island") { Description = "Fail unless the node belongs to this island" };
        var command = new Command("status", "Show an island's members, its job's step, loss, images/s, last checkpoint and restart count")
        {
            url, island
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, async (ctx, parse, cancel) =>
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(15) };
            var address = parse.GetValue(url)!.TrimEnd('/') + "/status";
            IslandStatus status;
            try
            {
                status = await http.GetFromJsonAsync<IslandStatus>(address, Diffusion.IO.Json.Options, cancel)
                    ?? throw new IslandsException($"{address}: empty answer");
            }
            catch (HttpRequestException e)
            {
                throw new IslandsException($"{address}: {e.Message}");
            }
            if (parse.GetValue(island) is { } expected && expected != status.Island)
                throw new ConfigException("--island", $"{parse.GetValue(url)} is a node of island '{status.Island}', not '{expected}'");
            ctx.Result(status, w =>
            {
                w.WriteLine($"island {status.Island} (asked {status.Node}; leader {status.Leader ?? "none"})");
                foreach (var m in status.Members) w.WriteLine($"  member {m.Address} {m.Status}{(m.Reachable ? "" : " UNREACHABLE")}");
                if (status.Job is { } j)
                {
                    w.WriteLine($"  job {j.Job}: {j.Phase} on {j.Node ?? "?"}, step {StatusText.Steps(j.Step, j.TotalSteps)}, loss " +
                        $"{StatusText.Loss(j.Loss)}, {j.ImagesPerSecond:F0} img/s");
                    w.WriteLine($"  last checkpoint {(j.LastCheckpoint is { } c
                        ? $"{c.Checkpoint} ({StatusText.Checkpoint(c.Step, c.Loss)}, " +
                            $"sha256 {c.ManifestSha256[..Math.Min(12, c.ManifestSha256.Length)]}…, {c.At:u})"
                        : "none")}");
                    w.WriteLine($"  recoveries {j.Recoveries}, worker restarts {j.WorkerRestarts}, rejected checkpoints " +
                        $"{j.RejectedCheckpoints.Count}");
                    if (j.LastError is not null) w.WriteLine($"  last error: {j.LastError}");
                }
                else w.WriteLine($"  job: phase unknown, step ?/? ({status.JobError ?? "the node answered without its job"})");
            });
            return ExitCodes.Ok;
        }));
        return command;
    }

    /// <summary>For container health checks: the node's own readiness endpoint, with no curl in the image.</summary>
    public static Command Health(TextWriter stdout, TextWriter stderr)
    {
        var url = new Option<string>("--url") { Description = "The node's HTTP address", DefaultValueFactory = _ => "http://127.0.0.1:8080" };
        var live = new Option<bool>("--live") { Description = "Check liveness (the process answers) instead of readiness (an Up cluster member)" };
        var command = new Command("health", "Exit 0 if a node (island or serving) is ready, 1 if not") { url, live };
        command.SetAction(IslandsCli.Action(stdout, stderr, async (ctx, parse, cancel) =>
        {
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
            var address = parse.GetValue(url)!.TrimEnd('/') + (parse.GetValue(live) ? "/health/live" : "/health/ready");
            try
            {
                using var response = await http.GetAsync(address, cancel);
                var body = await response.Content.ReadAsStringAsync(cancel);
                ctx.Result(new { url = address, status = (int)response.StatusCode, body },
                    w => w.WriteLine($"{address}: {(int)response.StatusCode} {body}"));
                return response.IsSuccessStatusCode ? ExitCodes.Ok : ExitCodes.Failure;
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                throw new IslandsException($"{address}: {e.Message}");
            }
        }));
        return command;
    }
}
