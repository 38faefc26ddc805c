using TorchSharp;

namespace Islands.Diffusion.Routing;

/// <summary>Predicts p(partition k | x_t, t, c) for a batch: [B, ...], [B], [B] -> [B, K] probabilities (rows sum to 1).</summary>
public interface IRouter
{
    int ExpertCount { get; }
    torch.Tensor Posterior(torch.Tensor x, torch.Tensor t, torch.Tensor classes);
}
