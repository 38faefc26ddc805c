using Islands.Diffusion.Modules;
using Islands.Diffusion.Routing;
using Islands.Diffusion.Runtime;
using Islands.Diffusion.Sampling;
using static TorchSharp.torch;

namespace Islands.Diffusion.Tests;

public sealed class EnsembleSpecs
{
    /// <summary>12 points in 4 well-separated groups of 3 (uneven spacing inside), in 2 dimensions.</summary>
    private static ExactPointSet Points()
    {
        double[,] p =
        {
            { 2, 2 }, { 2.5, 1.5 }, { 1.5, 2.4 },
            { -2, 2 }, { -2.6, 2.2 }, { -1.7, 1.4 },
            { -2, -2 }, { -2.2, -1.5 }, { -1.4, -2.5 },
            { 2, -2 }, { 2.7, -2.1 }, { 1.8, -1.3 },
        };
        var flat = new double[24];
        for (var i = 0; i < 12; i++) { flat[2 * i] = p[i, 0]; flat[2 * i + 1] = p[i, 1]; }
        return new ExactPointSet(tensor(flat).reshape(12, 2), [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
    }

    private static (ExpertEnsemble Ensemble, ExactClusterExpert[] Experts) Build(ExactPointSet set, RoutingStrategy strategy, IRouter? router = null, bool[]? available = null)
    {
        var experts = Enumerable.Range(0, set.K).Select(k => new ExactClusterExpert(set, k)).ToArray();
        return (new ExpertEnsemble(experts, router ?? new ExactPosteriorRouter(set), strategy, available), experts);
    }

    [Fact]
    public void Should_equal_the_global_flow_with_exact_experts_and_the_exact_posterior()
    {
        TorchSetup.Initialise(2);
        var set = Points();
        var (ensemble, _) = Build(set, RoutingStrategy.Full);
        using var generator = new Generator(11);
        foreach (var t in new[] { 0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99 })
        {
            var x = randn([256, 2], dtype: ScalarType.Float64, generator: generator) * 2.5;
            var global = set.MarginalVelocity(x, full(256, t, dtype: ScalarType.Float64));
            var combined = ensemble.Velocity(x, t, full(256, -1L, dtype: ScalarType.Int64), cfg: 1);
            var error = (combined - global).abs().max().item<double>();
            var scale = global.abs().max().item<double>();
            Assert.True(error <= 1e-9 * Math.Max(1, scale), $"t={t}: max |ensemble - global| = {error} (velocity scale {scale})");
        }
    }

    [Fact]
    public void Should_land_on_the_data_when_sampling_the_exact_ensemble()
    {
        TorchSetup.Initialise(2);
        var set = Points();
        var (ensemble, _) = Build(set, RoutingStrategy.Full);
        var samples = FlowSampler.Sample(ensemble.Field(1), 64, null, new SamplerOptions(Steps: 200, Seed: 3), (2, 1, 1));
        var flat = samples.view(64, 2).to_type(ScalarType.Float64);
        var nearest = (flat.unsqueeze(1) - set.Points.unsqueeze(0)).pow(2).sum(2).min(1).values.sqrt();
        Assert.True(nearest.max().item<double>() < 1e-3, $"farthest sample is {nearest.max().item<double>()} from the data");
    }

    [Fact]
    public void Should_approach_the_global_flow_with_a_learned_router()
    {
        TorchSetup.Initialise(2);
        var set = Points();
        random.manual_seed(0);
        var router = new RouterNet(2, set.K, hidden: 64, timeDim: 16, classCount: 1);
        using var optimizer = optim.Adam(router.parameters(), 3e-3);
        using var generator = new Generator(5);
        var clusters = tensor(set.Clusters);
        for (var step = 0; step < 600; step++)
        {
            using var scope = NewDisposeScope();
            var idx = randint(0, 12, [256], generator: generator);
            var t = rand(256, generator: generator) * 0.98 + 0.01;
            var x0 = set.Points.index_select(0, idx).to_type(ScalarType.Float32);
            var xt = (1 - t.unsqueeze(1)) * x0 + t.unsqueeze(1) * randn([256, 2], generator: generator);
            var loss = nn.functional.cross_entropy(router.call(xt, t, zeros(256, dtype: ScalarType.Int64)), clusters.index_select(0, idx));
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
        }
        router.eval();
        var (learned, _) = Build(set, RoutingStrategy.Full, router);
        var (uniform, _) = Build(set, RoutingStrategy.Full, new FixedUniformRouter(set.K));
        double learnedError = 0, uniformError = 0;
        using var evalGenerator = new Generator(9);
        foreach (var t in new[] { 0.1, 0.3, 0.5, 0.7 })
        {
            var idx = randint(0, 12, [512], generator: evalGenerator);
            var x = (1 - t) * set.Points.index_select(0, idx) + t * randn([512, 2], dtype: ScalarType.Float64, generator: evalGenerator);
            var global = set.MarginalVelocity(x, full(512, t, dtype: ScalarType.Float64));
            var classes = zeros(512, dtype: ScalarType.Int64);
            learnedError += (learned.Velocity(x, t, classes, 1) - global).pow(2).mean().item<double>();
            uniformError += (uniform.Velocity(x, t, classes, 1) - global).pow(2).mean().item<double>();
        }
        Assert.True(learnedError < 0.1 * uniformError, $"learned-router error {learnedError:F4} vs uninformed router {uniformError:F4}");
    }

    private sealed class FixedUniformRouter(int k) : IRouter
    {
        public int ExpertCount => k;
        public long NullClass => 0;
        public Tensor Posterior(Tensor x, Tensor t, Tensor classes) => full([x.shape[0], k], 1.0 / k, dtype: ScalarType.Float64);
    }

    [Fact]
    public void Should_route_a_class_to_the_partitions_that_hold_it_with_the_training_free_router_even_from_pure_noise()
    {
        // Two partitions of 2x2 images: partition 0 holds classes 0 and 1 (bright), partition 1 holds class 2 (dark) and
        // a few of class 1. At t=1 the image is pure noise, so only the class can tell the partitions apart.
        var pixels = new List<byte>();
        var labels = new List<byte>();
        var assignments = new List<int>();
        void Add(byte value, byte label, int partition, int count)
        {
            for (var i = 0; i < count; i++)
            {
                pixels.AddRange(Enumerable.Repeat((byte)(value + i % 7), 4));
                labels.Add(label);
                assignments.Add(partition);
            }
        }
        Add(220, 0, 0, 40);
        Add(200, 1, 0, 30);
        Add(30, 1, 1, 10);
        Add(20, 2, 1, 40);
        var images = new Data.LabeledImages([.. pixels], [.. labels], 1, 2, 2);
        var partitions = new Partitioning.PartitionFile(1, "test", "", "", 0, 2, 2, 0, null, [], [0, 1], [], [.. assignments], [70, 50], [], ["a", "b", "c"]);
        using var router = GaussianRouter.Fit(images, partitions);
        using var noise = randn(4, 1, 2, 2, generator: new Generator(3));
        using var posterior = router.Posterior(noise, ones(4), tensor(new long[] { 0, 1, 2, 3 }));
        var p = posterior.to_type(ScalarType.Float64).data<double>().ToArray();
        Assert.Equal(1.0, p[0], 6);                 // class 0 lives only in partition 0
        Assert.Equal(0.75, p[2], 6);                // class 1: 30 of its 40 images are in partition 0
        Assert.Equal(0.0, p[4], 6);                 // class 2 lives only in partition 1
        Assert.Equal(70.0 / 120, p[6], 6);          // the null class falls back to the partitions' shares
        // Near the data the pixels decide, within the class: a dark class-1 image belongs to partition 1.
        using var dark = full(1, 1, 2, 2, -0.75f);
        using var nearData = router.Posterior(dark, full(1, 0.05f), tensor(new long[] { 1 }));
        Assert.True(nearData[0, 1].item<float>() > 0.99f, $"p(partition 1 | dark class-1 image) = {nearData[0, 1].item<float>()}");
    }

    [Fact]
    public void Should_equal_oracle_routing_when_top1_uses_a_router_that_is_always_right()
    {
        TorchSetup.Initialise(2);
        var set = Points();
        // Quadrant of the sample = its "true" partition, known to both the perfect router and the oracle.
        Tensor Quadrant(Tensor x)
        {
            var flat = x.flatten(1);
            var right = flat[.., 0] > 0;
            var up = flat[.., 1] > 0;
            return where(up, where(right, 0L, 1L), where(right, 3L, 2L)).to_type(ScalarType.Int64);
        }
        var perfect = new FixedRouter(Quadrant, 4);
        using var generator = new Generator(21);
        var x = randn([200, 2], dtype: ScalarType.Float64, generator: generator) * 2;
        var truth = Quadrant(x).data<long>().ToArray();
        var (top1, _) = Build(set, RoutingStrategy.Top1, perfect);
        var oracle = new ExpertEnsemble(Enumerable.Range(0, 4).Select(k => (IVelocityModel)new ExactClusterExpert(set, k)).ToArray(),
            new ExactPosteriorRouter(set), new RoutingStrategy("oracle", OracleExpert: 0)) { OracleAssignments = truth };
        var classes = full(200, -1L, dtype: ScalarType.Int64);
        foreach (var t in new[] { 0.2, 0.6, 0.95 })
            Assert.True(top1.Velocity(x, t, classes, 1).eq(oracle.Velocity(x, t, classes, 1)).all().item<bool>());
    }

    [Theory]
    [InlineData("full")]
    [InlineData("top1")]
    [InlineData("top2")]
    [InlineData("topk:3")]
    [InlineData("threshold:0.2")]
    [InlineData("sample")]
    [InlineData("oracle:2")]
    public void Should_never_give_work_to_an_unavailable_expert_and_renormalise(string strategy)
    {
        TorchSetup.Initialise(2);
        var set = Points();
        bool[] available = [true, true, false, true];
        var (ensemble, experts) = Build(set, RoutingStrategy.Parse(strategy), available: available);
        using var generator = new Generator(4);
        var x = randn([128, 2], dtype: ScalarType.Float64, generator: generator) * 2;
        var classes = full(128, -1L, dtype: ScalarType.Int64);
        foreach (var t in new[] { 0.1, 0.5, 0.9 })
        {
            var weights = ensemble.Weights(x, t, classes);
            Assert.Equal(0.0, weights[.., 2].abs().max().item<double>());
            Assert.True((weights.sum(1) - 1).abs().max().item<double>() < 1e-9, "weights must sum to 1 over the available experts");
            ensemble.Velocity(x, t, classes, 1).Dispose();
        }
        Assert.Equal(0, experts[2].Calls);
        Assert.True(experts.Where((_, k) => k != 2).Sum(e => e.Rows) > 0);
    }

    [Fact]
    public void Should_degrade_to_the_single_expert_left()
    {
        TorchSetup.Initialise(2);
        var set = Points();
        var (ensemble, _) = Build(set, RoutingStrategy.Full, available: [false, true, false, false]);
        var x = randn([32, 2], dtype: ScalarType.Float64);
        var alone = set.MarginalVelocity(x, full(32, 0.4, dtype: ScalarType.Float64), [1]);
        Assert.True((ensemble.Velocity(x, 0.4, full(32, -1L, dtype: ScalarType.Int64), 1) - alone).abs().max().item<double>() < 1e-12);
    }

    [Fact]
    public void Should_evaluate_each_expert_once_per_step_on_just_its_rows()
    {
        TorchSetup.Initialise(2);
        var set = Points();
        var (ensemble, experts) = Build(set, RoutingStrategy.Top1);
        var x = randn([100, 2], dtype: ScalarType.Float64) * 2;
        ensemble.Velocity(x, 0.5, full(100, -1L, dtype: ScalarType.Int64), 1);
        Assert.All(experts, e => Assert.True(e.Calls <= 1));
        Assert.Equal(100, experts.Sum(e => e.Rows));
        Assert.Equal(100, ensemble.RouterRowEvaluations);
    }

    [Fact]
    public void Should_route_guided_sampling_with_the_conditional_branch_on_experts_of_different_sizes()
    {
        TorchSetup.Initialise(2);
        random.manual_seed(2);
        using var small = new Configs.ModelConfig(BaseChannels: 8, ClassCount: 3).Build();
        using var large = new Configs.ModelConfig(BaseChannels: 16, ChannelMultipliers: [1, 2], ClassCount: 3).Build();
        small.eval();
        large.eval();
        var router = new FixedRouter(x => (x.flatten(1).mean([1]) > 0).to_type(ScalarType.Int64), 2);
        var trace = new RoutingTrace();
        var ensemble = new ExpertEnsemble([small, large], router, RoutingStrategy.Top1, trace: trace);
        var samples = FlowSampler.Sample(ensemble.Field(cfg: 2.0), 6, [0, 1, 2, 0, 1, 2], new SamplerOptions(Steps: 3), (1, 28, 28));
        Assert.Equal([6L, 1, 28, 28], samples.shape);
        Assert.Equal(3, trace.Steps.Count);
        Assert.All(trace.Steps, step => Assert.All(step.Samples, s => Assert.Single(s.Experts)));
        Assert.Equal(6 * 3 * 2, ensemble.ExpertRowEvaluations.Sum()); // both guidance branches on the one chosen expert
    }
}
