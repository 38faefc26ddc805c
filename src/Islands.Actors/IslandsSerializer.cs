using System.Collections.Frozen;
using System.Text.Json;
using System.Text.Json.Serialization;
using Akka.Actor;
using System.Runtime.Serialization;
using Akka.Serialization;

namespace Islands.Actors;

/// <summary>
/// Serializer for every <see cref="IIslandsMessage"/>, on the wire and in the journal: compact JSON (small messages;
/// weights never travel) with a short, stable manifest per type, so renaming a namespace never breaks an old journal.
/// </summary>
public sealed class IslandsSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    public const int SerializerId = 7401;

    private static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>Manifest of each type. Append only: a manifest, once used in a journal, must keep meaning the same type.</summary>
    public static readonly FrozenDictionary<string, Type> Types = new Dictionary<string, Type>
    {
        ["job-status?"] = typeof(GetJobStatus),
        ["job-status"] = typeof(JobStatus),
        ["stop-training"] = typeof(StopTraining),
        ["training-stopped"] = typeof(TrainingStopped),
        ["committed-checkpoint"] = typeof(CommittedCheckpoint),
        ["ev:job-started"] = typeof(JobStarted),
        ["ev:job-resumed"] = typeof(JobResumed),
        ["ev:checkpoint-committed"] = typeof(CheckpointCommitted),
        ["ev:checkpoint-rejected"] = typeof(CheckpointRejected),
        ["ev:job-completed"] = typeof(JobCompleted),
    }.ToFrozenDictionary();

    private static readonly FrozenDictionary<Type, string> Manifests = Types.ToFrozenDictionary(p => p.Value, p => p.Key);

    public override int Identifier => SerializerId;

    public override string Manifest(object o) => Manifests.TryGetValue(o.GetType(), out var manifest)
        ? manifest
        : throw new SerializationException($"{o.GetType().FullName} is an IIslandsMessage without a manifest in IslandsSerializer.Types");

    public override byte[] ToBinary(object obj) => JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), Options);

    public override object FromBinary(byte[] bytes, string manifest) => Types.TryGetValue(manifest, out var type)
        ? JsonSerializer.Deserialize(bytes, type, Options) ?? throw new SerializationException($"manifest {manifest}: empty payload")
        : throw new SerializationException($"unknown manifest '{manifest}' (written by a newer version?)");
}
