namespace Islands.Hosting.Viewer;

/// <summary>
/// What the viewer's event stream carries. Every message names the protocol version; a page that expects another one
/// (it was loaded before the node was upgraded or rolled back) says so instead of drawing what it cannot read.
/// </summary>
public static class ViewerProtocol
{
    /// <summary>Raise it whenever a message, panel or element changes in a way an older page would misread.</summary>
    public const int Version = 1;
}

/// <param name="Type">hello (first, with the server's name and the order of the page's sections), panel (a panel, new or changed), removed (a
/// panel's id) or heartbeat.</param>
public sealed record ViewerMessage(int Protocol, string Type, ViewerPanel? Panel = null, string? Removed = null, string? Server = null,
    IReadOnlyList<string>? Groups = null);

/// <summary>
/// One component's panel, as the component declares it (nerfstudio's viewer elements): what it shows and the controls it
/// offers. The page draws any panel from its elements and knows nothing of islands, ensembles or distillations, so a
/// new kind of job (a radiance field's camera) adds a panel, not a page.
/// </summary>
/// <param name="Group">The section the page puts it in (islands, ensemble, distillations, ...), in order of first appearance.</param>
/// <param name="Health">ok, warn (degraded: a member unreachable, recovering) or down (not answering, diverged, failed).</param>
public sealed record ViewerPanel(string Id, string Group, string Title, string Health, string? Detail, IReadOnlyList<ViewerElement> Elements);

/// <summary>One element of a panel.</summary>
/// <param name="Kind">
/// text (Value), progress (Value of Max), curve (Series), table (Columns, Rows), image (Url: changes only when the image
/// does), link (Url), or form (Fields, posted as JSON to Action with Method; Result says how the page shows the answer:
/// generation (images and the routing heatmap) or status).
/// </param>
public sealed record ViewerElement(string Kind, string Id, string Label, string? Value = null, double? Max = null,
    IReadOnlyList<ViewerSeries>? Series = null, IReadOnlyList<string>? Columns = null, IReadOnlyList<ViewerRow>? Rows = null, string? Url = null,
    IReadOnlyList<ViewerField>? Fields = null, string? Action = null, string? Method = null, string? Result = null)
{
    public static ViewerElement Text(string id, string label, string? value) => new("text", id, label, value);
}

/// <summary>A curve's series: points as [x, y]; Style line or points.</summary>
public sealed record ViewerSeries(string Name, string Style, IReadOnlyList<double[]> Points);

/// <param name="Health">ok, warn or down: how the page colours the row.</param>
public sealed record ViewerRow(IReadOnlyList<string?> Cells, string Health = "ok");

/// <summary>A form's input: number (Min, Max, Step), select (Options) or text; Value is its initial value.</summary>
public sealed record ViewerField(string Name, string Label, string Type, string? Value = null, double? Min = null, double? Max = null,
    double? Step = null, IReadOnlyList<ViewerOption>? Options = null);

public sealed record ViewerOption(string Value, string Label);
