using Islands.Diffusion.Configs;
using Islands.Diffusion.Modules;
using Islands.Diffusion.Routing;
using Islands.Diffusion.Runtime;
using Islands.Diffusion.Sampling;
using Islands.Diffusion.Serving;
using static TorchSharp.torch;
using Xunit.Abstractions;

namespace Islands.Diffusion.Tests;

/// <summary>
/// Serving's sampling loop against the offline sampler: a served generation must be the offline one, however it was
/// batched, and a missing expert must be handled as the method prescribes (renormalise over the rest, never guess).
/// </summary>
public sealed class ServingCoreSpecs(ITestOutputHelper output)
{
    private static readonly (long C, long H, long W) Shape = (2, 1, 1);

    private static ExactPointSet Points()
    {
        double[] flat = [2, 2, 2.5, 1.5, -2, 2, -2.6, 2.2, -2, -2, -2.2, -1.5, 2, -2, 2.7, -2.1];
        return new ExactPointSet(tensor(flat).reshape(8, 2), [0, 0, 1, 1, 2, 2, 3, 3]);
    }

    /// <summary>An expert's answer as a sampler entity gives it: float32 over the wire.</summary>
    private static Tensor Answer(IVelocityModel expert, ExpertWork work) =>
        GuidedVelocity.Evaluate(expert, work.X, tensor(work.T), tensor(work.Classes), tensor(work.Cfg)).to_type(ScalarType.Float32);

    /// <summary>Runs every admitted generation to completion, every expert answering, with the exact experts.</summary>
    private static List<CompletedGeneration> Drain(ContinuousSampler sampler, ExactPointSet set, int maxRows, Func<int, bool>? answers = null)
    {
        var experts = Enumerable.Range(0, set.K).Select(k => new ExactClusterExpert(set, k)).ToArray();
        var done = new List<CompletedGeneration>();
        for (var guard = 0; guard < 10_000 && sampler.PendingRows > 0; guard++)
        {
            var plan = sampler.Plan(maxRows, Enumerable.Repeat(true, set.K).ToArray())!;
            var replies = plan.Work.Where(w => answers?.Invoke(w.Expert) ?? true)
                .ToDictionary(w => w.Expert, w => Answer(experts[w.Expert], w));
            done.AddRange(sampler.Apply(plan, replies).Completed);
        }
        return done;
    }

    [Theory]
    [InlineData("euler")]
    [InlineData("heun")]
    public void Should_serve_exactly_the_offline_ensemble_sample_however_requests_are_batched(string method)
    {
        TorchSetup.Initialise(2);
        var set = Points();
        var sampler = new ContinuousSampler(new ExactPosteriorRouter(set), Shape);
        // Few steps: with many, the exact flow collapses onto the data points whatever the stepper, and Euler's final
        // samples would equal Heun's.
        sampler.Admit("a", new GenerationSpec(12, null, 4, 1, RoutingStrategy.Top1, Seed: 5, method));
        sampler.Admit("b", new GenerationSpec(5, null, 3, 1, RoutingStrategy.Full, Seed: 9, method));
        // 7 rows per step: request a spans two batches, and b joins whenever a leaves room.
        var served = Drain(sampler, set, maxRows: 7).ToDictionary(c => c.Id);

        foreach (var (id, count, steps, strategy, seed) in new[] { ("a", 12, 4, RoutingStrategy.Top1, 5L), ("b", 5, 3, RoutingStrategy.Full, 9L) })
        {
            var ensemble = new ExpertEnsemble(Enumerable.Range(0, set.K).Select(k => new ExactClusterExpert(set, k)).ToArray(), new ExactPosteriorRouter(set), strategy);
            using var offline = FlowSampler.Sample(ensemble.Field(1), count, null, new SamplerOptions(Steps: steps, Method: method, Seed: seed), Shape);
            var expected = offline.contiguous().data<float>().ToArray();
            var actual = served[id].Samples;
            var error = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
            Assert.True(error < 1e-4, $"{id} ({method}): served differs from offline by {error}");
            Assert.All(actual, v => Assert.True(float.IsFinite(v)));
            // The stepper matters at this step count: the other one's offline samples are far from these.
            var other = method == FlowStep.Euler ? FlowStep.Heun : FlowStep.Euler;
            using var otherOffline = FlowSampler.Sample(ensemble.Field(1), count, null, new SamplerOptions(Steps: steps, Method: other, Seed: seed), Shape);
            var apart = otherOffline.contiguous().data<float>().ToArray().Zip(actual, (e, a) => Math.Abs(e - a)).Max();
            Assert.True(apart > 1e-2, $"{id} ({method}): {other} gives the same samples (max difference {apart}), so this does not tell steppers apart");
            output.WriteLine($"{id} ({method}, {steps} steps): served - offline {error:E1}, served - offline {other} {apart:F3}, nearest data point {Nearest(set, actual):F3}");
            Assert.All(served[id].Routing, r => Assert.Equal(steps, r.Length));
            Assert.Empty(served[id].LeftOutExperts);
        }
    }

    [Theory]
    [InlineData("euler")]
    [InlineData("heun")]
    public void Should_serve_the_offline_sample_when_a_slow_experts_rows_wait_for_it_while_the_other_rows_move_on(string method)
    {
        TorchSetup.Initialise(2);
        var set = Points();
        var experts = Enumerable.Range(0, set.K).Select(k => new ExactClusterExpert(set, k)).ToArray();
        var sampler = new ContinuousSampler(new ExactPosteriorRouter(set), Shape);
        sampler.Admit("a", new GenerationSpec(12, null, 12, 1, RoutingStrategy.Top1, Seed: 5, method));
        sampler.Admit("b", new GenerationSpec(5, null, 9, 1, RoutingStrategy.Parse("top2"), Seed: 9, method));
        const int slow = 1;
        // Expert 1 answers a plan only after three later plans: each plan's other rows are applied at once, its rows
        // for expert 1 when that answer comes, and no plan may take an image that is out or that needs expert 1 meanwhile.
        var waiting = new List<(StepPlan Plan, Dictionary<int, Tensor> Answers, int Age)>();
        var done = new List<CompletedGeneration>();
        var planned = new HashSet<(string, int)>();
        var plansWhileSlowWasBusy = 0;
        Tensor AnswerOf(ExpertWork w) => Answer(experts[w.Expert], w);
        IReadOnlyList<int> Free(StepPlan plan) => Enumerable.Range(0, plan.Rows.Count).Where(r => !plan.ExpertsOf(r).Contains(slow)).ToList();
        for (var guard = 0; guard < 10_000 && sampler.PendingRows > 0; guard++)
        {
            var busy = waiting.Count > 0 ? new HashSet<int> { slow } : new HashSet<int>();
            var plan = sampler.Plan(7, [true, true, true, true], busy);
            if (plan is not null)
            {
                foreach (var (g, i) in plan.Rows) Assert.True(planned.Add((g.Id, i)), $"{g.Id} image {i} planned while it was out");
                if (busy.Count > 0)
                {
                    plansWhileSlowWasBusy++;
                    Assert.DoesNotContain(plan.Work, w => w.Expert == slow);
                }
                var answers = plan.Work.Where(w => w.Expert != slow).ToDictionary(w => w.Expert, AnswerOf);
                var free = Free(plan);
                done.AddRange(sampler.Apply(plan, answers, free).Completed);
                foreach (var r in free) planned.Remove((plan.Rows[r].Generation.Id, plan.Rows[r].Image));
                if (plan.Work.Any(w => w.Expert == slow)) waiting.Add((plan, answers, 0));
            }
            for (var j = 0; j < waiting.Count; j++) waiting[j] = waiting[j] with { Age = waiting[j].Age + 1 };
            foreach (var (late, answers, _) in waiting.Where(w => w.Age > 3 || plan is null).ToList())
            {
                answers[slow] = AnswerOf(late.Work.Single(w => w.Expert == slow));
                var rest = Enumerable.Range(0, late.Rows.Count).Except(Free(late)).ToList();
                done.AddRange(sampler.Apply(late, answers, rest).Completed);
                foreach (var r in rest) planned.Remove((late.Rows[r].Generation.Id, late.Rows[r].Image));
                waiting.RemoveAll(w => w.Plan == late);
            }
        }
        output.WriteLine($"{plansWhileSlowWasBusy} plans went ahead while expert {slow} was busy");
        Assert.True(plansWhileSlowWasBusy > 10, $"only {plansWhileSlowWasBusy} plans went ahead while expert {slow} was busy");

        var served = done.ToDictionary(c => c.Id);
        foreach (var (id, count, steps, strategy, seed) in new[] { ("a", 12, 12, RoutingStrategy.Top1, 5L), ("b", 5, 9, RoutingStrategy.Parse("top2"), 9L) })
        {
            var ensemble = new ExpertEnsemble(experts, new ExactPosteriorRouter(set), strategy);
            using var offline = FlowSampler.Sample(ensemble.Field(1), count, null, new SamplerOptions(Steps: steps, Method: method, Seed: seed), Shape);
            var error = offline.contiguous().data<float>().ToArray().Zip(served[id].Samples, (e, a) => Math.Abs(e - a)).Max();
            Assert.True(error < 1e-4, $"{id} ({method}): served with a slow expert differs from offline by {error}");
            output.WriteLine($"{id} ({method}, {steps} steps, expert {slow} slow): served - offline {error:E1}");
            Assert.Empty(served[id].LeftOutExperts);
            Assert.Equal(0, served[id].RetriedRowSteps);
        }
    }

    [Fact]
    public void Should_renormalise_over_the_experts_that_answered_when_one_misses_its_deadline()
    {
        TorchSetup.Initialise(2);
        var set = Points();
        var sampler = new ContinuousSampler(new ExactPosteriorRouter(set), Shape);
        sampler.Admit("a", new GenerationSpec(16, null, 10, 1, RoutingStrategy.Full, Seed: 2));
        var served = Drain(sampler, set, 64, answers: k => k != 2).Single();

        var available = new[] { true, true, false, true };
        var ensemble = new ExpertEnsemble(Enumerable.Range(0, set.K).Select(k => new ExactClusterExpert(set, k)).ToArray(), new ExactPosteriorRouter(set),
            RoutingStrategy.Full, available);
        using var offline = FlowSampler.Sample(ensemble.Field(1), 16, null, new SamplerOptions(Steps: 10, Seed: 2), Shape);
        var error = offline.contiguous().data<float>().ToArray().Zip(served.Samples, (e, a) => Math.Abs(e - a)).Max();
        Assert.True(error < 1e-4, $"degraded served sample differs from the offline ensemble without expert 2 by {error}");
        Assert.Equal([2], served.LeftOutExperts);
    }

    [Fact]
    public void Should_hold_a_top1_row_whose_expert_missed_and_route_it_elsewhere_next_step()
    {
        TorchSetup.Initialise(2);
        var set = Points();
        var sampler = new ContinuousSampler(new ExactPosteriorRouter(set), Shape);
        var generation = sampler.Admit("a", new GenerationSpec(32, null, 5, 1, RoutingStrategy.Top1, Seed: 4));
        var plan = sampler.Plan(64, [true, true, true, true])!;
        var silent = plan.Work.OrderByDescending(w => w.PlanRows.Length).First();
        var experts = Enumerable.Range(0, set.K).Select(k => new ExactClusterExpert(set, k)).ToArray();
        var replies = plan.Work.Where(w => w.Expert != silent.Expert)
            .ToDictionary(w => w.Expert, w => Answer(experts[w.Expert], w));
        var outcome = sampler.Apply(plan, replies);

        Assert.Equal(silent.PlanRows.Length, outcome.StalledRows);
        Assert.Equal(silent.PlanRows.Length, generation.RetriedRowSteps);
        Assert.Equal(0, generation.Step);
        Assert.Contains(silent.Expert, generation.LeftOutExperts);
        var available = Enumerable.Range(0, 4).Select(k => k != silent.Expert).ToArray();
        var next = sampler.Plan(64, available)!;
        Assert.DoesNotContain(next.Work, w => w.Expert == silent.Expert);
        Assert.Equal(32, next.Work.Sum(w => w.PlanRows.Length));
    }

    [Fact]
    public void Should_drop_the_rows_of_a_generation_removed_while_its_plan_was_out_and_apply_the_others()
    {
        TorchSetup.Initialise(2);
        var set = Points();
        var experts = Enumerable.Range(0, set.K).Select(k => new ExactClusterExpert(set, k)).ToArray();
        var sampler = new ContinuousSampler(new ExactPosteriorRouter(set), Shape);
        sampler.Admit("expired", new GenerationSpec(3, null, 4, 1, RoutingStrategy.Full, Seed: 1));
        var kept = sampler.Admit("kept", new GenerationSpec(2, null, 4, 1, RoutingStrategy.Full, Seed: 2, FlowStep.Heun));
        using var plan = sampler.Plan(64, [true, true, true, true])!;
        Assert.Equal(5, plan.Rows.Count);
        // The router times a request out (its state is freed) while the experts are still computing its rows.
        sampler.Remove("expired");
        var outcome = sampler.Apply(plan, plan.Work.ToDictionary(w => w.Expert, w => Answer(experts[w.Expert], w)));
        Assert.Equal([kept], outcome.Advanced);
        Assert.Empty(outcome.Completed);
        Assert.Equal(2, sampler.PendingRows);
        Assert.Equal(2, sampler.ReadyRows);
    }

    [Fact]
    public void Should_guide_each_row_with_its_own_class_and_scale_as_the_offline_sampler_does()
    {
        TorchSetup.Initialise(2);
        using var model = new ModelConfig(BaseChannels: 8, ClassCount: 3).Build();
        model.eval();
        using var generator = new Generator(3);
        using var x = randn([6, 1, 28, 28], generator: generator);
        long[] classes = [0, 2, -1, 1, -1, 2];
        float[] cfg = [3, 3, 3, 1, 1, 0];
        const float t = 0.6f;
        // Through the sampler entity's wire format: float32 bytes in, bytes out, rows of mixed classes and scales.
        var bytes = GuidedVelocity.Evaluate(model, GuidedVelocity.ToBytes(x), Enumerable.Repeat(t, 6).ToArray(), classes, cfg, (1, 28, 28));
        using var served = GuidedVelocity.FromBytes(bytes, [6, 1, 28, 28]);
        Assert.True(served.isfinite().all().item<bool>());
        for (var i = 0; i < 6; i++)
        {
            using var row = x[i..(i + 1)];
            using var c = tensor(new[] { classes[i] });
            // Offline: one row alone, guided (or not) by the same scale.
            using var expected = GuidedVelocity.Evaluate(model, row, t, c, cfg[i]);
            var error = (expected - served[i..(i + 1)]).abs().max().item<float>();
            Assert.True(error < 1e-4, $"row {i} (class {classes[i]}, cfg {cfg[i]}): differs by {error}");
        }
        using var unguided = GuidedVelocity.Evaluate(model, x[..1], t, tensor(new[] { 0L }), 1.0);
        Assert.True((unguided - served[..1]).abs().max().item<float>() > 1e-3, "guidance at scale 3 changed nothing");
    }

    private static double Nearest(ExactPointSet set, float[] samples)
    {
        using var points = tensor(samples).view(-1, 2).to_type(ScalarType.Float64);
        return (points.unsqueeze(1) - set.Points.unsqueeze(0)).pow(2).sum(2).min(1).values.sqrt().max().item<double>();
    }
}
