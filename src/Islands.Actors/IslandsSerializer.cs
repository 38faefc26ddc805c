using System.Buffers.Binary;
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
/// An <see cref="IPayloadMessage"/> is framed as [header length, int32 LE][JSON header][raw payload bytes].
/// </summary>
public sealed class IslandsSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    public const int SerializerId = 7401;

    // Named literals ("NaN", "Infinity") on purpose, unlike Json.Options' null: this is the wire and journal format, read
    // only by Islands nodes. It keeps a NaN loss a NaN between nodes (null would merge it with "no loss yet" in a nullable
    // field) and stays readable by nodes of earlier versions, which cannot read null into a non-nullable float. Outputs
    // for people and other programs (HTTP, files, --json) go through Json.Options / ASP.NET's options, which write null.
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
        ["job-history?"] = typeof(GetJobHistory),
        ["job-history"] = typeof(JobHistory),
        ["stop-training"] = typeof(StopTraining),
        ["training-stopped"] = typeof(TrainingStopped),
        ["committed-checkpoint"] = typeof(CommittedCheckpoint),
        ["ev:job-started"] = typeof(JobStarted),
        ["ev:job-resumed"] = typeof(JobResumed),
        ["ev:checkpoint-committed"] = typeof(CheckpointCommitted),
        ["ev:checkpoint-rejected"] = typeof(CheckpointRejected),
        ["ev:job-completed"] = typeof(JobCompleted),
        ["ev:job-rolled-back"] = typeof(JobRolledBack),
        ["ev:job-diverged"] = typeof(JobDiverged),
        ["ev:job-reopened"] = typeof(JobReopened),
        ["models?"] = typeof(Serving.GetPublishedModels),
        ["models"] = typeof(Serving.PublishedModelsSnapshot),
        ["model-published"] = typeof(Serving.ModelPublished),
        ["velocity?"] = typeof(Serving.ExpertVelocityRequest),
        ["velocity"] = typeof(Serving.ExpertVelocityReply),
        ["velocity-failed"] = typeof(Serving.ExpertVelocityFailed),
        ["generate"] = typeof(Serving.Generate),
        ["generation-accepted"] = typeof(Serving.GenerationAccepted),
        ["generation-progress"] = typeof(Serving.GenerationProgress),
        ["generation-completed"] = typeof(Serving.GenerationCompleted),
        ["generation-failed"] = typeof(Serving.GenerationFailed),
        ["generation?"] = typeof(Serving.GetGeneration),
        ["generation"] = typeof(Serving.GenerationState),
        ["generation-retried"] = typeof(Serving.GenerationRetried),
        ["score?"] = typeof(Serving.ScoreQuery),
        ["score"] = typeof(Serving.ScoreAnswer),
    }.ToFrozenDictionary();

    private static readonly FrozenDictionary<Type, string> Manifests = Types.ToFrozenDictionary(p => p.Value, p => p.Key);

    public override int Identifier => SerializerId;

    public override string Manifest(object o) => Manifests.TryGetValue(o.GetType(), out var manifest)
        ? manifest
        : throw new SerializationException($"{o.GetType().FullName} is an IIslandsMessage without a manifest in IslandsSerializer.Types");

    public override byte[] ToBinary(object obj) => Encode(obj);

    public override object FromBinary(byte[] bytes, string manifest) => Types.TryGetValue(manifest, out var type)
        ? Decode(bytes, type)
        : throw new SerializationException($"unknown manifest '{manifest}' (written by a newer version?)");

    /// <summary>The wire form of a message, also used for files that hold one (serving's stored results).</summary>
    public static byte[] Encode(object obj)
    {
        var header = JsonSerializer.SerializeToUtf8Bytes(obj, obj.GetType(), Options);
        if (obj is not IPayloadMessage message) return header;
        var bytes = new byte[4 + header.Length + message.Payload.Length];
        BinaryPrimitives.WriteInt32LittleEndian(bytes, header.Length);
        header.CopyTo(bytes, 4);
        message.Payload.CopyTo(bytes, 4 + header.Length);
        return bytes;
    }

    public static object Decode(byte[] bytes, Type type)
    {
        if (!typeof(IPayloadMessage).IsAssignableFrom(type))
            return JsonSerializer.Deserialize(bytes, type, Options) ?? throw new SerializationException($"{type.Name}: empty message");
        var length = bytes.Length >= 4 ? BinaryPrimitives.ReadInt32LittleEndian(bytes) : -1;
        if (length < 0 || length > bytes.Length - 4)
            throw new SerializationException($"{type.Name}: header length {length} does not fit a {bytes.Length}-byte frame");
        var message = JsonSerializer.Deserialize(bytes.AsSpan(4, length), type, Options) as IPayloadMessage
            ?? throw new SerializationException($"{type.Name}: empty message");
        return message.WithPayload(bytes[(4 + length)..]);
    }
}
