namespace Islands.Actors;

/// <summary>
/// Marks every message and journal event that may leave the process. <see cref="IslandsSerializer"/> is bound to this
/// interface, so with strict serialization a type that lacks the marker fails loudly instead of falling back to JSON.NET.
/// </summary>
public interface IIslandsMessage;

/// <summary>
/// A message that carries bulk numbers (images, velocities) as raw little-endian bytes beside its small JSON header, so
/// tensors cross the wire at 4 bytes per float instead of as JSON text.
/// </summary>
public interface IPayloadMessage : IIslandsMessage
{
    byte[] Payload { get; }
    IPayloadMessage WithPayload(byte[] payload);
}
