namespace Islands.Cli.Launcher;

public sealed record ChaosKill(int Kill, string Victim, string Role, string Group, double AtSeconds, double? RecoverySeconds, string RecoveredBy);
