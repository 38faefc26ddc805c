using static TorchSharp.torch;

namespace Islands.Diffusion.Serving;

/// <summary>The rows one expert must evaluate in a step (indices into the plan's rows) and their inputs; X is [rows, C, H, W].</summary>
public sealed record ExpertWork(int Expert, int[] PlanRows, Tensor X, float[] T, long[] Classes, float[] Cfg);

/// <summary>
/// One step of the continuous batch: which image of which request each row is, its weights [rows × K], and the
/// experts' work. The plan owns its tensors until it is disposed, once its last rows have been applied.
/// </summary>
public sealed record StepPlan(long Id, IReadOnlyList<(ServedGeneration Generation, int Image)> Rows, double[] Weights, int ExpertCount,
    IReadOnlyList<ExpertWork> Work) : IDisposable
{
    /// <summary>The experts row r needs (those with a positive weight).</summary>
    public IEnumerable<int> ExpertsOf(int row) => Enumerable.Range(0, ExpertCount).Where(e => Weights[row * ExpertCount + e] > 0);

    public void Dispose()
    {
        foreach (var work in Work) work.X.Dispose();
    }
}
