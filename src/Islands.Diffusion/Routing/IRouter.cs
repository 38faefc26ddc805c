using TorchSharp;

namespace Islands.Diffusion.Routing;

/// <summary>Predicts p(partition k | x_t, t, c) for a batch: [B, ...], [B], [B] -> [B, K] probabilities (rows sum to 1).</summary>
public interface IRouter
{
    int ExpertCount { get; }

    /// <summary>The class that means "unconditional" to this router (callers say -1; <see cref="RoutedStep"/> maps it).</summary>
    long NullClass { get; }

    /// <summary>Whether the router learned "degraded, class c" itself; otherwise such labels are asked as class c.</summary>
    bool LearnedDegradedCondition => false;

    torch.Tensor Posterior(torch.Tensor x, torch.Tensor t, torch.Tensor classes);
}
