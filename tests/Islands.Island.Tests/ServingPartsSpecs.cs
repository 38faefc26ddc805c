using Akka.Actor;
using Islands.Actors.Serving;
using Islands.Diffusion.Sampling;
using Islands.Diffusion.Serving;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Islands.Island.Tests;

/// <summary>The router's expert health on its own: a cool-down after a miss, and when a step is straggling.</summary>
public sealed class ExpertHealthSpecs
{
    [Fact]
    public void Should_leave_an_expert_out_for_the_cooldown_and_take_it_back_after()
    {
        var now = new DateTime(2026, 12, 3, 12, 0, 0, DateTimeKind.Utc);
        var health = new ExpertHealth(TimeSpan.FromSeconds(5), 3, () => now);
        health.LeaveOut(2);
        Assert.Equal([true, true, false, true], health.Availability(4, _ => true));
        Assert.Equal([false, true, false, true], health.Availability(4, k => k != 0));
        now += TimeSpan.FromSeconds(4.9);
        Assert.True(health.IsLeftOut(2));
        now += TimeSpan.FromSeconds(0.2);
        Assert.Equal([true, true, true, true], health.Availability(4, _ => true));
    }

    [Fact]
    public void Should_call_a_step_straggling_after_the_factor_times_the_lower_median_answer_time_and_never_past_the_deadline()
    {
        var health = new ExpertHealth(TimeSpan.FromSeconds(5), 3);
        Assert.Null(health.StragglerAfter(TimeSpan.FromSeconds(5)));
        health.Answered(0, 0.10);
        health.Answered(1, 0.12);
        health.Answered(2, 0.11);
        health.Answered(3, 2.00); // the slow one does not set the pace it is judged by
        Assert.Equal(0.33, health.StragglerAfter(TimeSpan.FromSeconds(5))!.Value.TotalSeconds, 3);
        Assert.Null(health.StragglerAfter(TimeSpan.FromSeconds(0.3)));
        Assert.Null(new ExpertHealth(TimeSpan.FromSeconds(5), 0).StragglerAfter(TimeSpan.FromSeconds(5)));
    }
}

/// <summary>A sampler entity as a unit, with a probe as its registry and as the router: the velocities it answers.</summary>
[Collection("islands")]
public sealed class SamplerActorSpecs(ITestOutputHelper output)
    : Akka.TestKit.Xunit2.TestKit($"{ServingSettings.TorchDispatcher} {{ type = PinnedDispatcher }}", output)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Should_answer_the_guided_velocity_of_its_published_expert_and_refuse_a_malformed_request()
    {
        var store = await ServingTestStore.StoreAsync();
        var scan = PublishedModels.Scan(store);
        var registry = CreateTestProbe();
        var settings = new ServingSettings
        {
            Store = store, ResultsDirectory = IslandTestEnvironment.TempDir("sampler-results"), Precision = "fp32", MaxBatchRows = 128,
            MaxWait = TimeSpan.FromMilliseconds(20), ExpertDeadline = TimeSpan.FromSeconds(5), ExpertCooldown = TimeSpan.FromSeconds(5),
            RequestTimeout = TimeSpan.FromMinutes(2), ProgressTimeout = TimeSpan.FromSeconds(15), RescanInterval = TimeSpan.FromMinutes(1),
            MaximumFrameBytes = 4 << 20,
        };
        var sampler = Sys.ActorOf(SamplerActor.Props(SamplerActor.EntityId(1), settings, registry.Ref));
        await registry.ExpectMsgAsync<GetPublishedModels>(Wait);
        sampler.Tell(new PublishedModelsSnapshot(1, store, scan.Experts, scan.Router, scan.Refused, DateTimeOffset.UtcNow), registry.Ref);

        var shape = ServedModels.ImageShape(scan.Experts[0]);
        using var generator = new TorchSharp.torch.Generator(5);
        using var x = randn([3, shape.C, shape.H, shape.W], generator: generator);
        var router = CreateTestProbe();
        sampler.Tell(new ExpertVelocityRequest("default", 1, 7, [0.9f, 0.5f, 0.1f], [4, -1, 2], [2.5f, 1f, 1f], null) { Payload = GuidedVelocity.ToBytes(x) },
            router.Ref);
        var reply = await router.ExpectMsgAsync<ExpertVelocityReply>(Wait);
        Assert.Equal((7L, 1), (reply.PlanId, reply.Expert));
        Assert.Equal(scan.Experts.Single(e => e.Expert == 1).ManifestSha256, reply.ManifestSha256);
        using var served = GuidedVelocity.FromBytes(reply.Payload, x.shape);
        using var expert = ServedModels.LoadExpert(scan.Experts.Single(e => e.Expert == 1), "fp32");
        using var expected = GuidedVelocity.Evaluate(expert.Model, x, tensor(new[] { 0.9f, 0.5f, 0.1f }), tensor(new[] { 4L, -1, 2 }), tensor(new[] { 2.5f, 1f, 1f }));
        Assert.True(served.isfinite().all().item<bool>());
        Assert.True(served.std().item<float>() > 1e-3, "the velocity is constant");
        Assert.True((served - expected).abs().max().item<float>() < 1e-4);

        sampler.Tell(new ExpertVelocityRequest("default", 1, 8, [0.5f, 0.5f], [0, 0], [1f, 1f], null) { Payload = new byte[12] }, router.Ref);
        var failed = await router.ExpectMsgAsync<ExpertVelocityFailed>(Wait);
        Assert.Equal(8, failed.PlanId);
        Assert.Contains("2 rows", failed.Reason);
    }
}
