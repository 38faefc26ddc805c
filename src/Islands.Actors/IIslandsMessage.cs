namespace Islands.Actors;

/// <summary>
/// Marks every message and journal event that may leave the process. <see cref="IslandsSerializer"/> is bound to this
/// interface, so with strict serialization a type that lacks the marker fails loudly instead of falling back to JSON.NET.
/// </summary>
public interface IIslandsMessage;
