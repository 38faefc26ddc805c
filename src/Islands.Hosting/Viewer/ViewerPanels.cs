using System.Globalization;
using Islands.Actors;
using Islands.Actors.Serving;
using Islands.Diffusion.Distillation;

namespace Islands.Hosting.Viewer;

/// <summary>How each component shows itself in the viewer: its panel, built from what its own API answers.</summary>
public static class ViewerPanels
{
    public const string IslandsGroup = "islands";
    public const string EnsembleGroup = "ensemble";
    public const string DistillationsGroup = "distillations";

    /// <summary>What one island endpoint answered (or why it did not).</summary>
    /// <param name="LastStatus">What this endpoint said when it last answered (shown, marked as such, while no node answers).</param>
    public sealed record IslandAnswer(Uri Endpoint, IslandStatus? Status, JobHistory? History, string? Error, IslandStatus? LastStatus = null,
        JobHistory? LastHistory = null, DateTimeOffset? LastHeard = null)
    {
        /// <summary>When <see cref="History"/> was fetched (it is reused for a few rounds).</summary>
        public DateTimeOffset? LastHeardHistory { get; init; }
    }

    /// <summary>The order of the page's sections.</summary>
    public static readonly IReadOnlyList<string> Groups = [IslandsGroup, EnsembleGroup, DistillationsGroup];

    private static string Num(double value, string format = "0.####") => value.ToString(format, CultureInfo.InvariantCulture);

    /// <summary>An island from its nodes' answers; <paramref name="servedStep"/> is the step serving uses of it (null: none).</summary>
    public static ViewerPanel Island(string island, IReadOnlyList<IslandAnswer> answers, long? servedStep)
    {
        var answered = answers.Where(a => a.Status is not null).ToList();
        var status = answered.FirstOrDefault(a => a.Status!.Job is not null)?.Status ?? answered.FirstOrDefault()?.Status;
        var history = answered.Select(a => a.History).FirstOrDefault(h => h is not null);
        // Nobody answers: what the island said last, marked as such (a red panel that still shows where it was).
        var lastHeard = answered.Count == 0 ? answers.Where(a => a.LastStatus is not null).MaxBy(a => a.LastHeard) : null;
        var job = status?.Job ?? lastHeard?.LastStatus?.Job;
        history ??= lastHeard?.LastHistory;
        var elements = new List<ViewerElement>();
        var problems = new List<string>();
        if (job is not null)
        {
            elements.Add(ViewerElement.Text("phase", "Phase",
                lastHeard is null ? job.Phase : $"{job.Phase} when last heard at {lastHeard.LastHeard:HH:mm:ss}"));
            elements.Add(new ViewerElement("progress", "step", "Step", Num(job.Step, "0"), job.TotalSteps));
            elements.Add(ViewerElement.Text("loss", "Loss", job.Loss is { } loss ? Num(loss) : "n/a"));
            elements.Add(ViewerElement.Text("throughput", "Images/s", Num(job.ImagesPerSecond, "0.0")));
            elements.Add(ViewerElement.Text("recoveries", "Recoveries",
                $"{job.Recoveries} resumed from the journal, {job.WorkerRestarts} worker restarts, {job.Rollbacks} rollbacks"));
            if (lastHeard is null && job.Phase is not ("training" or "completed")) problems.Add($"job {job.Phase}");
            if (lastHeard is null && job.LastError is { } error) problems.Add(error);
        }
        else if (status?.JobError is { } jobError)
        {
            elements.Add(ViewerElement.Text("phase", "Phase", "unknown"));
            problems.Add(jobError);
        }
        if (history is not null)
        {
            elements.Add(new ViewerElement("curve", "loss-curve", "Loss", Series:
            [
                new ViewerSeries("loss", "line", [.. history.Losses.Select(p => new[] { p.Step, (double)p.Loss })]),
                new ViewerSeries("checkpoints", "points",
                    [.. history.Committed.Where(c => float.IsFinite(c.Loss)).Select(c => new[] { c.Step, (double)c.Loss })]),
            ]));
            var rows = history.Committed.Select(c => (c.At, Row: new ViewerRow(
                    [Num(c.Step, "0"), c.Checkpoint, float.IsFinite(c.Loss) ? Num(c.Loss) : "n/a",
                        c.At.ToString("HH:mm:ss", CultureInfo.InvariantCulture),
                        c.Step == servedStep ? "committed, published and served" : "committed"])))
                .Concat(history.Rejected.Select(r => (r.At, Row: new ViewerRow(
                    [Num(r.Step, "0"), r.Checkpoint, "", r.At.ToString("HH:mm:ss", CultureInfo.InvariantCulture), $"rejected: {r.Reason}"], "down"))))
                .OrderByDescending(r => r.At).Take(8).Select(r => r.Row).ToList();
            elements.Add(new ViewerElement("table", "checkpoints", "Checkpoints", Columns: ["step", "checkpoint", "loss", "at", "state"],
                Rows: rows));
        }
        var members = new List<ViewerRow>();
        if (status is not null)
            foreach (var m in status.Members)
            {
                var healthy = m.Reachable && m.Status == "Up";
                if (!healthy) problems.Add($"{m.Address} {(m.Reachable ? m.Status : "unreachable")}");
                members.Add(new ViewerRow([m.Address, m.Status, m.Reachable ? "reachable" : "unreachable",
                    m.Address == job?.Node ? "trains" : ""], healthy ? "ok" : "warn"));
            }
        foreach (var failed in answers.Where(a => a.Status is null))
        {
            problems.Add($"{failed.Endpoint} not answering");
            members.Add(new ViewerRow([failed.Endpoint.ToString(), "not answering", failed.Error, ""], "down"));
        }
        elements.Add(new ViewerElement("table", "members", "Members", Columns: ["node", "status", "reachability", "role"], Rows: members));
        var health = status is null || job?.Phase == "diverged" ? "down" : problems.Count > 0 ? "warn" : "ok";
        return new ViewerPanel("island:" + island, IslandsGroup, island, health,
            status is null ? "no node of this island answers" : problems.Count > 0 ? string.Join("; ", problems) : null, elements);
    }

    public const string UnknownEndpointsId = "island-endpoints";

    /// <summary>Island endpoints that have not answered since this node started, so belong to no island it knows.</summary>
    public static ViewerPanel UnknownEndpoints(IReadOnlyList<IslandAnswer> answers) =>
        new(UnknownEndpointsId, IslandsGroup, "Endpoints not answering", "warn",
            $"{answers.Count} island endpoint(s) have not answered since this node started (islands:serving:viewer:islands)",
            [new ViewerElement("table", "endpoints", "Endpoints", Columns: ["endpoint", "error"],
                Rows: [.. answers.Select(a => new ViewerRow([a.Endpoint.ToString(), a.Error], "warn"))])]);

    /// <summary>The ensemble: what is served, each expert's and the ensemble's latest grid, and the generate form.</summary>
    public static ViewerPanel Ensemble(PublishedModelsSnapshot snapshot, IReadOnlyList<string> classes,
        IReadOnlyDictionary<string, (string Label, string Url)> grids)
    {
        static string Short(string sha) => sha.Length > 12 ? sha[..12] : sha;
        var elements = new List<ViewerElement>
        {
            new("table", "experts", "Published", Columns: ["job", "island", "step", "checkpoint", "sha256", "published"],
                Rows: [.. snapshot.Experts.Append(snapshot.Router).OfType<Diffusion.Serving.PublishedModel>().Select(m => new ViewerRow(
                    [m.Job, m.Island, Num(m.Step, "0"), Path.GetFileName(m.CheckpointDirectory), Short(m.ManifestSha256),
                        m.PublishedUtc.ToString("HH:mm:ss", CultureInfo.InvariantCulture)]))]),
        };
        if (snapshot.Refused.Count > 0)
            elements.Add(new ViewerElement("table", "refused", "Refused", Columns: ["why"],
                Rows: [.. snapshot.Refused.Select(r => new ViewerRow([r], "down"))]));
        foreach (var (key, (label, url)) in grids.OrderBy(g => g.Key == "ensemble" ? "" : g.Key, StringComparer.Ordinal))
            elements.Add(new ViewerElement("image", "grid-" + key, label, Url: url));
        if (snapshot.Experts.Count > 0 && snapshot.Router is not null)
            elements.Add(new ViewerElement("form", "generate", "Generate", Action: "/v1/generations", Method: "POST", Result: "generation", Fields:
            [
                new ViewerField("class", "Class", "select", classes.Count > 0 ? "0" : "",
                    Options: [.. classes.Select((c, i) => new ViewerOption(i.ToString(CultureInfo.InvariantCulture), c))]),
                new ViewerField("count", "Count", "number", "4", 1, 16, 1),
                new ViewerField("steps", "Steps", "number", "20", 1, 100, 1),
                new ViewerField("cfg", "Guidance", "number", "1", 0, 10, 0.5),
                new ViewerField("strategy", "Strategy", "select", "top1",
                    Options: [.. new[] { "top1", "top2", "full" }.Select(s => new ViewerOption(s, s))]),
                new ViewerField("seed", "Seed", "number", "0", 0, 1 << 30, 1),
            ]));
        var health = snapshot.Experts.Count == 0 || snapshot.Router is null ? "warn" : snapshot.Refused.Count > 0 ? "warn" : "ok";
        var detail = snapshot.Experts.Count == 0 || snapshot.Router is null
            ? $"nothing to serve yet: {snapshot.Experts.Count} experts and {(snapshot.Router is null ? "no" : "a")} router published"
            : snapshot.Refused.Count > 0 ? $"{snapshot.Refused.Count} publication(s) refused" : null;
        return new ViewerPanel("ensemble", EnsembleGroup, $"Ensemble of {snapshot.Experts.Count} experts", health, detail, elements);
    }

    /// <summary>A distillation job; <paramref name="previewUrl"/> is its latest images (null before the first frame).</summary>
    public static ViewerPanel Distillation(DistillationStatus s, string? previewUrl)
    {
        var location = $"/v1/distillations/{s.Id}";
        var elements = new List<ViewerElement>
        {
            ViewerElement.Text("phase", "Phase", s.Phase),
            ViewerElement.Text("stage", "Stage", s.Stage),
            new("progress", "step", "Step", Num(s.Step, "0"), s.Steps),
            ViewerElement.Text("direction", "Update direction", float.IsFinite(s.Direction) ? Num(s.Direction) : "n/a"),
        };
        if (s.Summary is { } summary) elements.Add(ViewerElement.Text("summary", "Summary", SummaryText(summary)));
        if (previewUrl is not null) elements.Add(new ViewerElement("image", "preview", s.Finished ? "Result" : "Current images", Url: previewUrl));
        if (s.Phase == "completed")
        {
            elements.Add(new ViewerElement("image", "trajectory", "Trajectory", Url: location + "/trajectory.gif"));
            elements.Add(new ViewerElement("link", "summary-json", "summary.json", Url: location + "/summary.json"));
        }
        if (!s.Finished)
            elements.Add(new ViewerElement("form", "cancel", "Cancel", Action: location, Method: "DELETE", Result: "status", Fields: []));
        var health = s.Phase == "failed" ? "down" : s.Phase is "cancelled" or "cancelling" ? "warn" : "ok";
        return new ViewerPanel("distillation:" + s.Id, DistillationsGroup, $"Distillation {s.Id[..9]}", health, s.Detail, elements);
    }

    private static string SummaryText(DistillationSummary s) =>
        $"{s.Method} {s.Task} to class {s.TargetClass}, {Num(s.SecondsPerStep, "0.00")} s/step" + (s.Scores is { } scores
            ? $", target probability {Num(scores.TargetProbability, "0.000")}, FID {Num(scores.Fid, "0.0")}, KID {Num(scores.Kid, "0.0000")}"
            : "");
}
