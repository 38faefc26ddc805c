using Akka.Actor;
using Akka.Event;
using Islands.Diffusion.Distillation;
using Islands.Diffusion.IO;

namespace Islands.Actors.Serving;

/// <summary>
/// One served distillation: runs the core's <see cref="DistillationRun"/> on its own task with the serving cluster's
/// score service as the prior (<see cref="ServedPrior"/>), keeps the latest frame for status and progress, and records
/// how the run ended in its directory (summary.json, failed.json or the cancelled marker; served.json counts its
/// queries). The run checkpoints as any run does, so a job stopped with its node resumes from its last checkpoint when
/// <see cref="DistillationsActor"/> starts it again. Its parent stops it on any failure (never restarts it: a second
/// run on the same directory must not start while the first one's task still ends).
/// </summary>
public sealed class DistillationJobActor : ReceiveActor, IWithTimers
{
    public const string FailedFile = "failed.json";
    public const string CancelledFile = "cancelled";
    public const string ServedFile = "served.json";

    private sealed record Finished(DistillationSummary Summary);

    private sealed record Crashed(string Detail);

    /// <summary>Looks for the cancelled marker that another node's DELETE writes into the shared directory.</summary>
    private sealed class CheckMarker
    {
        public static readonly CheckMarker Instance = new();
    }

    public ITimerScheduler Timers { get; set; } = null!;

    private readonly string directory;
    private readonly DistillationRequest request;
    private readonly ServedPriorFactory connect;
    private readonly CancellationTokenSource cancel = new();
    private readonly ILoggingAdapter log = Context.GetLogger();
    private readonly ServedPriorCounters counters;
    private DistillationStatus status;
    private bool cancelled;

    public static Props Props(string id, DistillationRequest request, string directory, ServedPriorFactory connect) =>
        Akka.Actor.Props.Create(() => new DistillationJobActor(id, request, directory, connect));

    public DistillationJobActor(string id, DistillationRequest request, string directory, ServedPriorFactory connect)
    {
        this.directory = directory;
        this.request = request;
        this.connect = connect;
        var servedPath = Path.Combine(directory, ServedFile);
        // A resumed job keeps counting from where it stopped.
        var served = File.Exists(servedPath) ? Json.Read<DistillationServing>(servedPath) : new DistillationServing(0, 0);
        counters = new ServedPriorCounters(served.DegradedRows, served.Retries);
        status = new DistillationStatus(id, "running", request.Config.StageAt(0), 0, request.Config.Steps, float.NaN, null, null, null);
        Receive<DistillationFrame>(f => status = status with { Stage = f.Stage, Step = f.Step, Direction = f.Direction, Preview = f.Png });
        Receive<GetDistillation>(_ => Sender.Tell(Current()));
        Receive<CancelDistillation>(_ =>
        {
            AtomicFile.Write(Path.Combine(directory, CancelledFile), _ => { });
            Cancel();
            Sender.Tell(Current());
        });
        Receive<CheckMarker>(_ =>
        {
            if (!cancelled && File.Exists(Path.Combine(directory, CancelledFile))) Cancel();
        });
        Receive<Finished>(f =>
        {
            SaveCounters();
            log.Info("distillation {0}: {1} at step {2}/{3}", status.Id, f.Summary.Completed ? "completed" : "stopped", f.Summary.Step,
                f.Summary.TotalSteps);
            Context.Stop(Self);
        });
        Receive<Crashed>(c =>
        {
            SaveCounters();
            if (!cancelled)
            {
                log.Error("distillation {0} failed: {1}", status.Id, c.Detail);
                Json.WriteAtomic(Path.Combine(directory, FailedFile), new DistillationFailure(c.Detail));
            }
            Context.Stop(Self);
        });
    }

    private void Cancel()
    {
        cancelled = true;
        cancel.Cancel();
        status = status with { Phase = "cancelling" };
    }

    private void SaveCounters() => Json.WriteAtomic(Path.Combine(directory, ServedFile), new DistillationServing(counters.DegradedRows,
        counters.Retries));

    private DistillationStatus Current() => status with { DegradedRows = counters.DegradedRows, Retries = counters.Retries };

    protected override void PreStart()
    {
        Timers.StartPeriodicTimer("marker", CheckMarker.Instance, TimeSpan.FromSeconds(1));
        var self = Self;
        var token = cancel.Token;
        var id = status.Id;
        var logger = log;
        var options = new DistillationOptions
        {
            Evaluate = request.Evaluate,
            SdeditStrengths = request.Sdedit,
            SdeditGuidance = request.SdeditGuidance,
            Prior = () => connect(request.Config.Strategy, counters, line => logger.Warning("distillation {0}: {1}", id, line), token),
            Frame = f => self.Tell(f),
        };
        Task.Run(() => DistillationRun.Execute(request.Config, directory, log: line => logger.Info("distillation {0}: {1}", id, line),
                cancel: token, options: options), CancellationToken.None)
            .PipeTo(self, success: s => new Finished(s),
                failure: e => new Crashed(e is AggregateException a ? a.InnerException!.Message : e.Message));
    }

    protected override void PostStop()
    {
        // A node going down stops the run at its next step; it commits what it did and resumes when the node is back.
        cancel.Cancel();
    }
}
