using System.Text.Json;
using Islands.Hosting.Viewer;

namespace Islands.Island.Tests;

public sealed class ViewerHubSpecs
{
    private static ViewerPanel Panel(string id, string value) =>
        new(id, "islands", id, "ok", null, [ViewerElement.Text("v", "Value", value)]);

    [Fact]
    public async Task Should_send_a_slow_subscriber_only_the_newest_state_of_each_changed_panel_and_never_block_publishing()
    {
        var hub = new ViewerHub(new JsonSerializerOptions(JsonSerializerDefaults.Web));
        using var slow = hub.Subscribe();
        // A thousand updates while the subscriber reads nothing: publishing does not wait for it.
        for (var i = 0; i < 1000; i++) hub.Publish(Panel("a", i.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        hub.Publish(Panel("b", "x"));
        var changes = await slow.NextAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
        Assert.Equal(["a", "b"], changes.Select(c => c.Id).Order());
        Assert.Equal("999", changes.Single(c => c.Id == "a").Panel!.Elements[0].Value);
        // An unchanged panel is not sent again; a removed one is sent as removed.
        hub.Publish(Panel("b", "x"));
        hub.Remove("a");
        var next = await slow.NextAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
        Assert.Equal(("a", (ViewerPanel?)null), Assert.Single(next));
        Assert.Empty(await slow.NextAsync(TimeSpan.FromMilliseconds(100), CancellationToken.None));
    }

    [Fact]
    public async Task Should_give_a_new_subscriber_every_current_panel()
    {
        var hub = new ViewerHub(new JsonSerializerOptions(JsonSerializerDefaults.Web));
        hub.Publish(Panel("a", "1"));
        hub.Publish(Panel("b", "2"));
        using var late = hub.Subscribe();
        Assert.Equal(2, hub.Panels.Count);
        Assert.Equal(["a", "b"], (await late.NextAsync(TimeSpan.FromSeconds(5), CancellationToken.None)).Select(c => c.Id).Order());
    }
}
