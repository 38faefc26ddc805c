using System.Globalization;

namespace Islands.Diffusion.Routing;

/// <summary>
/// How router probabilities become expert weights at each step: full (exact), topk:N and top1 (renormalised),
/// threshold:p, sample (one expert drawn from the router; known to be bad), oracle:k (a given partition).
/// </summary>
public sealed record RoutingStrategy(string Kind, int TopK = 1, double Threshold = 0, int OracleExpert = -1)
{
    public static RoutingStrategy Full => new("full");
    public static RoutingStrategy Top1 => new("topk", 1);

    public static RoutingStrategy Parse(string text)
    {
        var parts = text.Split(':', 2);
        var name = parts[0].Trim().ToLowerInvariant();
        var argument = parts.Length > 1 ? parts[1] : null;
        switch (name)
        {
            case "full" when argument is null: return Full;
            case "top1" when argument is null: return Top1;
            case "top2" when argument is null: return new RoutingStrategy("topk", 2);
            case "topk" when int.TryParse(argument, NumberStyles.Integer, CultureInfo.InvariantCulture, out var k) && k >= 1:
                return new RoutingStrategy("topk", k);
            case "threshold" when double.TryParse(argument, NumberStyles.Float, CultureInfo.InvariantCulture, out var p) && p is > 0 and <= 1:
                return new RoutingStrategy("threshold", Threshold: p);
            case "sample" when argument is null: return new RoutingStrategy("sample");
            case "oracle" when int.TryParse(argument, NumberStyles.Integer, CultureInfo.InvariantCulture, out var e) && e >= 0:
                return new RoutingStrategy("oracle", OracleExpert: e);
            default:
                throw new ConfigException("strategy", $"'{text}' must be full, top1, top2, topk:N, threshold:P (0<P<=1), sample or oracle:K");
        }
    }

    public override string ToString() => Kind switch
    {
        "topk" => TopK is 1 or 2 ? $"top{TopK}" : $"topk:{TopK}",
        "threshold" => $"threshold:{Threshold.ToString(CultureInfo.InvariantCulture)}",
        "oracle" => $"oracle:{OracleExpert}",
        _ => Kind,
    };
}
