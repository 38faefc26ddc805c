using Islands.Diffusion;

namespace Islands.Cli;

/// <summary>
/// The core names a bad setting as its config record does (batchSize, as in config.json); the CLI reports it as the
/// option its user typed (--batch).
/// </summary>
internal static class OptionNames
{
    private static readonly Dictionary<string, string> Flags = new()
    {
        ["dataDirectory"] = "--data", ["partitionsFile"] = "--partitions", ["expert"] = "--expert", ["steps"] = "--steps",
        ["batchSize"] = "--batch", ["learningRate"] = "--lr", ["warmupSteps"] = "--warmup", ["emaDecay"] = "--ema",
        ["timeSampling"] = "--t-sampling", ["checkpointEvery"] = "--checkpoint-every", ["keepCheckpoints"] = "--keep",
        ["precision"] = "--precision", ["hidden"] = "--hidden", ["sampler"] = "--sampler", ["cfg"] = "--cfg", ["k"] = "--k",
        ["fineClusters"] = "--fine", ["embeddingDimensions"] = "--dims", ["balanceTolerance"] = "--tolerance", ["method"] = "--method",
        ["classes"] = "--class", ["class"] = "--class", ["count"] = "--count", ["experts"] = "--model", ["unavailable"] = "--unavailable",
        ["router"] = "--router", ["strategy"] = "--strategy", ["runDirectory"] = "--out", ["device"] = "--device", ["store"] = "--store",
        ["source"] = "--source", ["size"] = "--size", ["seed"] = "--seed", ["targetClass"] = "--class", ["sourceClass"] = "--source-class",
        ["guidance"] = "--guidance", ["switchStep"] = "--switch-step", ["tMin"] = "--t-min", ["degradedSource"] = "--plain-source",
        ["illusionClass"] = "--turned", ["inputClass"] = "--from", ["tMax"] = "--t-max",
    };

    public static string Describe(ConfigException e) =>
        Flags.TryGetValue(e.Field, out var flag) && e.Message.StartsWith(e.Field + ":", StringComparison.Ordinal)
            ? flag + e.Message[e.Field.Length..]
            : e.Message;
}
