namespace Islands.Actors.Serving;

/// <summary>
/// What the router knows of each expert's health: a circuit breaker (an expert that missed its deadline or cannot answer
/// is left out for a cool-down, then tried again) and each expert's typical answer time, which says when a step is
/// straggling. Plain state, no actor: the router asks it and tells it what happened.
/// </summary>
public sealed class ExpertHealth(TimeSpan cooldown, double stragglerFactor, Func<DateTime>? clock = null)
{
    private readonly Func<DateTime> now = clock ?? (() => DateTime.UtcNow);
    private readonly Dictionary<int, DateTime> downUntil = [];
    /// <summary>Each expert's answer time, a moving average (seconds): what "usually" means for a straggler.</summary>
    private readonly Dictionary<int, double> answerSeconds = [];

    /// <summary>Leaves the expert out until the cool-down has passed.</summary>
    public void LeaveOut(int expert) => downUntil[expert] = now() + cooldown;

    public bool IsLeftOut(int expert) => downUntil.TryGetValue(expert, out var until) && until > now();

    /// <summary>Which of the experts may get work now: published and not cooling down.</summary>
    public bool[] Availability(int experts, Func<int, bool> published) =>
        Enumerable.Range(0, experts).Select(k => published(k) && !IsLeftOut(k)).ToArray();

    public void Answered(int expert, double seconds) =>
        answerSeconds[expert] = answerSeconds.TryGetValue(expert, out var before) ? 0.8 * before + 0.2 * seconds : seconds;

    /// <summary>
    /// How long a step may wait before it is straggling: the straggler factor times the lower median of the experts'
    /// answer times (a median, so that one slow expert does not set the pace it is measured against); none before the
    /// first answers, when the factor is 0, or when that would reach the deadline.
    /// </summary>
    public TimeSpan? StragglerAfter(TimeSpan deadline)
    {
        if (stragglerFactor <= 0 || answerSeconds.Count == 0) return null;
        var typical = answerSeconds.Values.Order().ElementAt((answerSeconds.Count - 1) / 2);
        var after = TimeSpan.FromSeconds(Math.Max(0.02, stragglerFactor * typical));
        return after < deadline ? after : null;
    }
}
