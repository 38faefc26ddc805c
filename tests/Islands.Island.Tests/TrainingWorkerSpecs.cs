using System.Globalization;
using Akka.Actor;
using Islands.Actors;
using Islands.Diffusion;
using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.IO;
using Islands.Diffusion.Methods;
using Islands.Diffusion.Training;
using Xunit.Abstractions;
using static Islands.Actors.TrainingWorker;

namespace Islands.Island.Tests;

/// <summary>A method no actor knows: fit one number to a target by gradient descent, checkpointed like any other.</summary>
public sealed record LineFitConfig(string Job = "line-fit", int Steps = 30, int BatchSize = 1, int CheckpointEvery = 10, int MaxRollbacks = 2,
    double Target = 3, double LearningRate = 0.1) : IMethodConfig
{
    public IEnumerable<string> Validate()
    {
        if (Steps < 1) yield return $"steps: {Steps} must be at least 1";
        if (LearningRate is <= 0 or >= 1) yield return $"learningRate: {LearningRate} must lie in (0, 1)";
    }
}

public sealed class LineFitMethod : TrainingMethod
{
    public override string Name => "line-fit";
    public override string Description => "test method: one parameter fitted to a target";
    public override Type ConfigType => typeof(LineFitConfig);
    public override IMethodConfig Defaults => new LineFitConfig();

    public override IChunkedTrainer Open(IMethodConfig config, string runDirectory, Action<string>? log = null, TorchSharp.torch.Device? device = null)
    {
        var c = As<LineFitConfig>(config);
        Directory.CreateDirectory(runDirectory);
        Json.WriteAtomic(Path.Combine(runDirectory, RunDirectory.ConfigFile), c);
        return new LineFitTrainer(c, new CheckpointStore(runDirectory));
    }
}

/// <summary>The trainer of <see cref="LineFitMethod"/>: loss (a − target)², one plain gradient step per training step.</summary>
public sealed class LineFitTrainer(LineFitConfig config, CheckpointStore store) : IChunkedTrainer
{
    private const string ValueFile = "value.txt";
    private readonly List<float> losses = [];

    public double Value { get; private set; }
    public long Step { get; private set; }
    public long TotalSteps => config.Steps;
    public int BatchSize => config.BatchSize;
    public int CheckpointEvery => config.CheckpointEvery;
    public double TrainSeconds { get; private set; }
    public IReadOnlyList<float> LossHistory => losses;
    public CheckpointStore Checkpoints => store;
    public NonFiniteGuard Guard { get; } = new(5);
    public long? FaultNanFromStep { get; set; }
    public int MaxRollbacks => config.MaxRollbacks;

    public float Train(int maxSteps, CancellationToken cancel = default)
    {
        var sum = 0.0;
        var good = 0;
        for (var i = 0; i < maxSteps && Step < TotalSteps && !Guard.Diverging; i++)
        {
            var error = Value - config.Target;
            var loss = FaultNanFromStep <= Step ? double.NaN : error * error;
            if (Guard.Record(Step, loss, 2 * error))
            {
                Value -= config.LearningRate * 2 * error;
                sum += loss;
                good++;
                losses.Add((float)loss);
            }
            Step++;
            TrainSeconds += 1e-3;
        }
        return good == 0 ? float.NaN : (float)(sum / good);
    }

    public CheckpointRef Commit() => store.Commit(Step, losses.Count == 0 ? null : losses[^1],
        dir => File.WriteAllText(Path.Combine(dir, ValueFile), Value.ToString("R", CultureInfo.InvariantCulture)));

    public void Restore(string checkpointDirectory)
    {
        var manifest = CheckpointStore.Verify(checkpointDirectory);
        Value = double.Parse(File.ReadAllText(Path.Combine(checkpointDirectory, ValueFile)), CultureInfo.InvariantCulture);
        Step = manifest.Step;
        Guard.Reset();
    }

    public void Dispose()
    {
    }
}

/// <summary>
/// The island's training worker as a unit, with a probe as its job actor: it trains whatever registered method its job
/// names, through the one training loop, and reports progress, commits and the end to the job.
/// </summary>
public sealed class TrainingWorkerSpecs(ITestOutputHelper output)
    : Akka.TestKit.Xunit2.TestKit("islands.training-dispatcher { type = PinnedDispatcher }", output)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    private static TrainingJob LineFit(int steps = 30)
    {
        var registry = new MethodRegistry(MethodRegistry.Default.Methods);
        registry.Register(new LineFitMethod());
        return registry.JobFor(new LineFitConfig(Steps: steps));
    }

    private static IslandJobSettings Settings(TrainingJob job, string run) =>
        new("unit", job, run, ChunkSteps: 4, MinBackoff: TimeSpan.FromSeconds(1), MaxBackoff: TimeSpan.FromSeconds(5));

    /// <summary>Everything the worker tells its job until it reports the end.</summary>
    private async Task<List<object>> UntilFinished(Akka.TestKit.TestProbe job)
    {
        var messages = new List<object>();
        for (var guard = 0; guard < 200; guard++)
        {
            var message = await job.ReceiveOneAsync(Wait);
            messages.Add(message);
            if (message is TrainingFinished or TrainingTroubled) return messages;
        }
        throw new InvalidOperationException("the worker never finished");
    }

    [Fact]
    public async Task Should_train_a_newly_registered_method_and_commit_at_every_checkpoint_boundary()
    {
        var run = IslandTestEnvironment.TempDir("line-fit");
        var job = CreateTestProbe();
        var worker = Sys.ActorOf(TrainingWorker.Props(job.Ref, Settings(LineFit(), run)));
        Assert.Equal(worker, (await job.ExpectMsgAsync<WorkerReady>(Wait)).Worker);
        worker.Tell(new BeginTraining(null, null), job.Ref);

        var messages = await UntilFinished(job);
        Assert.Equal(30, Assert.IsType<TrainingFinished>(messages[^1]).Step);
        var commits = messages.OfType<CheckpointWritten>().Select(c => c.Checkpoint).ToList();
        Assert.Equal([10L, 20, 30], commits.Select(c => c.Step));
        Assert.All(commits, c => Assert.Equal(c.ManifestSha256, AtomicFile.Sha256(Path.Combine(c.Directory, CheckpointManifest.FileName))));
        var losses = messages.OfType<WorkerProgress>().Select(p => p.Loss).ToList();
        Assert.All(losses, l => Assert.True(float.IsFinite(l)));
        Assert.True(losses[^1] < losses[0] * 1e-3, $"loss went from {losses[0]} to {losses[^1]}");
        // Chunks stop at checkpoint boundaries: 4, 4, 2 steps up to each commit.
        Assert.Equal([4, 4, 2, 4, 4, 2, 4, 4, 2], messages.OfType<WorkerProgress>().Select(p => p.Steps));
    }

    [Fact]
    public async Task Should_resume_from_the_checkpoint_its_job_names_and_refuse_one_whose_manifest_is_not_the_journaled_one()
    {
        var run = IslandTestEnvironment.TempDir("line-fit-resume");
        var first = CreateTestProbe();
        var worker = Sys.ActorOf(TrainingWorker.Props(first.Ref, Settings(LineFit(), run)));
        await first.ExpectMsgAsync<WorkerReady>(Wait);
        worker.Tell(new BeginTraining(null, null), first.Ref);
        var written = (await UntilFinished(first)).OfType<CheckpointWritten>().First().Checkpoint;
        await WatchAsync(worker);
        Sys.Stop(worker);
        await ExpectTerminatedAsync(worker, Wait);

        var second = CreateTestProbe();
        var resumed = Sys.ActorOf(TrainingWorker.Props(second.Ref, Settings(LineFit(), run)));
        await second.ExpectMsgAsync<WorkerReady>(Wait);
        resumed.Tell(new BeginTraining(Path.GetFileName(written.Directory), written.ManifestSha256), second.Ref);
        var progress = (await UntilFinished(second)).OfType<WorkerProgress>().ToList();
        Assert.Equal(written.Step + 4, progress[0].Step);

        var third = CreateTestProbe();
        var refusing = Sys.ActorOf(TrainingWorker.Props(third.Ref, Settings(LineFit(), run)));
        await third.ExpectMsgAsync<WorkerReady>(Wait);
        await EventFilter.Exception<CheckpointException>().ExpectOneAsync(() =>
        {
            refusing.Tell(new BeginTraining(Path.GetFileName(written.Directory), new string('0', 64)), third.Ref);
            return Task.CompletedTask;
        });
        Assert.Equal(Path.GetFileName(written.Directory), (await third.ExpectMsgAsync<CheckpointUnusable>(Wait)).Checkpoint);
    }
}
