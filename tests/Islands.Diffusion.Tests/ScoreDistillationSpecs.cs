using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.Distillation;
using Islands.Diffusion.Runtime;
using Islands.Diffusion.Sampling;
using static TorchSharp.torch;

namespace Islands.Diffusion.Tests;

/// <summary>
/// Score distillation against closed forms: a point set whose classes are its clusters has an exact class-conditional
/// velocity, so the distillation direction and where optimisation leads are known without any trained network.
/// </summary>
public sealed class ScoreDistillationSpecs
{
    /// <summary>Two classes of three points each in 4 dimensions (images of 1 x 2 x 2), far apart.</summary>
    private static ExactPointSet Points() => new(tensor(new double[]
    {
        1.5, 1.2, 0.9, 1.4,   1.1, 1.6, 1.3, 0.8,   1.4, 0.9, 1.5, 1.2,
        -1.3, -0.9, -1.5, -1.1,   -0.8, -1.4, -1.2, -1.6,   -1.5, -1.2, -0.9, -1.3,
    }).reshape(6, 4), [0, 0, 0, 1, 1, 1]);

    private static readonly (long C, long H, long W) Shape = (1, 2, 2);

    /// <summary>The exact field: a row of class c flows to c's points, a row of class -1 to all of them.</summary>
    private static VelocityField Exact(ExactPointSet set) => (x, t, classes, _) =>
    {
        var result = zeros(x.shape, dtype: ScalarType.Float64);
        foreach (var c in classes.data<long>().ToArray().Distinct())
        {
            var rows = (classes == c).nonzero().squeeze(1);
            var xs = x.index_select(0, rows);
            var v = set.MarginalVelocity(xs, full(xs.shape[0], t, dtype: ScalarType.Float64), c < 0 ? null : [c]);
            result.index_copy_(0, rows, v);
        }
        return result;
    };

    /// <summary>E[ε | x_t, c] computed directly from the posterior over the points: (x_t − (1−t)·E[x0 | x_t, c]) / t.</summary>
    private static Tensor ExpectedNoise(ExactPointSet set, Tensor xt, double t, long? cls)
    {
        var logits = set.LogKernel(xt, full(xt.shape[0], t, dtype: ScalarType.Float64));
        if (cls is { } c)
        {
            var keep = tensor(set.Clusters.Select(k => k == c).ToArray()).unsqueeze(0);
            logits = where(keep, logits, full_like(logits, double.NegativeInfinity));
        }
        var mean = nn.functional.softmax(logits, 1).matmul(set.Points);
        return ((xt.flatten(1) - (1 - t) * mean) / t).view(xt.shape);
    }

    [Fact]
    public void The_sds_direction_equals_the_mixtures_analytic_guided_noise_minus_the_injected_noise()
    {
        TorchSetup.Initialise(2);
        var set = Points();
        using var generator = new Generator(3);
        var x = randn([5, 1, 2, 2], generator: generator, dtype: ScalarType.Float64);
        var eps = randn([5, 1, 2, 2], generator: generator, dtype: ScalarType.Float64);
        foreach (var (t, g) in new[] { (0.3, 1.0), (0.6, 4.0), (0.9, 40.0) })
        {
            var xt = (1 - t) * x + t * eps;
            var conditional = ExpectedNoise(set, xt, t, 1);
            var unconditional = ExpectedNoise(set, xt, t, null);
            var expected = unconditional + g * (conditional - unconditional) - eps;
            var direction = ScoreDistillation.Direction(Exact(set), x, eps, t, full(5, 1L), full(5, -1L), g, noiseSource: true);
            Assert.True(direction.isfinite().all().item<bool>());
            Assert.True((direction - expected).abs().max().item<double>() < 1e-9, $"t {t}, g {g}");
            Assert.True(direction.abs().max().item<double>() > 0.1, "a direction that is zero everywhere would pass any comparison");
        }
    }

    [Fact]
    public void A_calibrated_direction_is_zero_when_source_and_target_are_the_same_condition_and_not_otherwise()
    {
        TorchSetup.Initialise(2);
        var set = Points();
        using var generator = new Generator(4);
        var x = randn([6, 1, 2, 2], generator: generator, dtype: ScalarType.Float64);
        var eps = randn([6, 1, 2, 2], generator: generator, dtype: ScalarType.Float64);
        var same = ScoreDistillation.Direction(Exact(set), x, eps, 0.5, full(6, 1L), full(6, 1L), 7.5, noiseSource: false);
        Assert.Equal(0.0, same.abs().max().item<double>());
        var other = ScoreDistillation.Direction(Exact(set), x, eps, 0.5, full(6, 1L), full(6, 0L), 7.5, noiseSource: false);
        var xt = 0.5 * x + 0.5 * eps;
        var expected = 7.5 * (ExpectedNoise(set, xt, 0.5, 1) - ExpectedNoise(set, xt, 0.5, 0));
        Assert.True((other - expected).abs().max().item<double>() < 1e-9);
        Assert.True(other.abs().max().item<double>() > 0.1);
    }

    [Theory]
    [InlineData("sds", null)]
    [InlineData("nfsd", 0)]
    [InlineData("bridge", 0)]
    public void Optimising_images_with_the_exact_prior_moves_them_to_the_target_class(string mode, int? source)
    {
        TorchSetup.Initialise(2);
        var set = Points();
        var config = new DistillConfig(Job: mode, Store: "(the exact prior)", TargetClass: 1, SourceClass: source, Count: 4, Steps: 300,
            SwitchStep: 150, Guidance: 3, LearningRate: 0.05, TMax: 0.9, DegradedSource: false);
        using var trainer = new DistillationTrainer(config, Exact(set), Shape);
        using var before = trainer.Images();
        trainer.Train(300);
        using var after = trainer.Images();
        Assert.True(after.isfinite().all().item<bool>());
        var classMean = set.Points.index_select(0, tensor(new long[] { 3, 4, 5 })).mean([0]).to_type(ScalarType.Float32);
        var otherMean = set.Points.index_select(0, tensor(new long[] { 0, 1, 2 })).mean([0]).to_type(ScalarType.Float32);
        var start = (before.flatten(1) - classMean).norm(1).mean().item<float>();
        var toTarget = (after.flatten(1) - classMean).norm(1);
        var toOther = (after.flatten(1) - otherMean).norm(1);
        Assert.True(toTarget.mean().item<float>() < 0.5 * start, $"{mode}: from {start:F3} to {toTarget.mean().item<float>():F3} of the class mean");
        Assert.True((toTarget < toOther).all().item<bool>(), $"{mode}: every image ends nearer class 1 than class 0");
    }

    [Fact]
    public void An_illusion_reads_as_one_class_upright_and_the_other_turned_because_the_turned_view_counts()
    {
        TorchSetup.Initialise(2);
        // Class 0 near e1, class 1 near e2; an image turned 180° (both axes of 2 x 2) maps e3 onto e2, so an illusion of
        // class 0 upright and class 1 turned must carry both e1 and e3, while plain class 0 carries only e1.
        var set = new ExactPointSet(tensor(new double[]
        {
            1.0, 0.1, -0.1, 0.0,   0.9, 0.0, 0.1, 0.05,   1.1, -0.1, 0.0, -0.05,
            0.1, 1.0, 0.0, -0.1,   0.0, 0.9, 0.05, 0.1,   -0.1, 1.1, -0.05, 0.0,
        }).reshape(6, 4), [0, 0, 0, 1, 1, 1]);
        DistillConfig Config(int? turned) => new(Job: "sds", Store: "(the exact prior)", Task: turned is null ? "class" : "illusion", TargetClass: 0,
            IllusionClass: turned, Count: 4, Steps: 300, Guidance: 3, LearningRate: 0.05, TMax: 0.9);
        using var plain = new DistillationTrainer(Config(null), Exact(set), Shape);
        plain.Train(300);
        using var illusion = new DistillationTrainer(Config(1), Exact(set), Shape,
            views: [new DistillView(false, 0, 0), new DistillView(true, 1, 1)]);
        illusion.Train(300);
        using var p = plain.Images().flatten(1).mean([0]);
        using var i = illusion.Images().flatten(1).mean([0]);
        Assert.True(p[0].item<float>() > 0.5 && p[2].item<float>() < 0.2, $"plain: {string.Join(", ", p.data<float>().ToArray())}");
        Assert.True(i[0].item<float>() > 0.2 && i[2].item<float>() > 0.2, $"illusion: {string.Join(", ", i.data<float>().ToArray())}");
    }

    [Fact]
    public void An_interrupted_run_restored_from_its_checkpoint_ends_with_the_same_images_as_an_uninterrupted_one()
    {
        TorchSetup.Initialise(2);
        var set = Points();
        var config = new DistillConfig(Job: "bridge", Store: "(the exact prior)", TargetClass: 0, SourceClass: 1, Count: 3, Steps: 40,
            SwitchStep: 20, Guidance: 2, LearningRate: 0.05, CheckpointEvery: 10, DegradedSource: false);
        using var whole = new DistillationTrainer(config, Exact(set), Shape);
        whole.Train(40);
        var run = TestData.TempDir("distill-resume");
        using (var first = new DistillationTrainer(config, Exact(set), Shape, new CheckpointStore(run)))
        {
            first.Train(25);
            first.Commit();
        }
        using var resumed = new DistillationTrainer(config, Exact(set), Shape, new CheckpointStore(run));
        resumed.Restore(resumed.Checkpoints.NewestValid()!.Value.Directory);
        Assert.Equal(25, resumed.Step);
        resumed.Train(15);
        using var a = whole.Images();
        using var b = resumed.Images();
        Assert.Equal(0f, (a - b).abs().max().item<float>());
        Assert.Equal(whole.LossHistory, resumed.LossHistory);
    }
}
