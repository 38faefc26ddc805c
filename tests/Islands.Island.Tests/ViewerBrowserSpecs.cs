using Islands.Hosting;
using Islands.Hosting.Viewer;
using Microsoft.Extensions.Logging;
using OpenQA.Selenium;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;
using Xunit.Abstractions;
using static Islands.Island.Tests.IslandTestEnvironment;

namespace Islands.Island.Tests;

/// <summary>
/// The viewer in a real headless browser (Debian's chromium) against in-process clusters: an island training live
/// (one node, SQLite, on a fixed HTTP port so that its restart answers where it did) and a serving node over a store of
/// published experts. Screenshots of every state are kept as artefacts (ISLANDS_TEST_ARTEFACTS, else a temporary folder).
/// </summary>
[Collection("islands")]
public sealed class ViewerBrowserSpecs(ITestOutputHelper output)
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task Should_sign_in_show_an_island_training_generate_with_its_routing_and_show_a_killed_island_red_until_it_recovers()
    {
        var (data, partitions) = await DatasetAsync();
        var store = TempDir("viewer");
        var islandHttp = FreePort();
        const string name = "viewer-expert";
        await using var island = await LocalIsland.StartAsync(name, 1, store,
            NodeConfig(data, partitions, 1_000_000, ("http:port", islandHttp), ("training:checkpointEvery", 10)), "sqlite", null, "expert:0");
        var log = new CapturedLog(Microsoft.Extensions.Logging.LogLevel.Trace);
        await using var serving = await LocalServing.StartAsync(1, await ServingTestStore.StoreAsync(),
            $"viewer:islands=[\"http://127.0.0.1:{islandHttp}\"]; viewer:interval=\"500ms\"; viewer:galleryInterval=\"1s\"",
            logging: l => l.AddProvider(log));
        var viewer = ServingNode.ViewerAddress(serving.Nodes[0].App)!;
        output.WriteLine($"viewer at {viewer}");
        var artefacts = Environment.GetEnvironmentVariable("ISLANDS_TEST_ARTEFACTS") is { Length: > 0 } root
            ? Path.Combine(root, "viewer") : TempDir("viewer-screenshots");
        using var chromium = new HeadlessChromium(artefacts);
        var page = chromium.Driver;
        try
        {
            // The viewer is on its own listener only: the API's address does not serve it.
            using (var api = new HttpClient())
                Assert.Equal(404, (int)(await api.GetAsync(serving.Nodes[0].Http + "/viewer/")).StatusCode);

            page.Navigate().GoToUrl(viewer);
            await chromium.Until(d => d.FindElement(By.Id("login")).Displayed, Wait, "the login form");
            page.FindElement(By.Id("key")).SendKeys("not-a-key");
            page.FindElement(By.Id("sign-in")).Click();
            await chromium.Until(d => d.FindElement(By.Id("login-error")).Text.Contains("not one of this node's API keys"), Wait, "a wrong key refused");
            Assert.Null(page.Manage().Cookies.GetCookieNamed(ViewerEndpoints.CookieName));
            chromium.Screenshot("wrong-key");

            page.FindElement(By.Id("key")).SendKeys(ServingTestStore.ApiKey);
            page.FindElement(By.Id("sign-in")).Click();
            var panel = $"[data-panel='island:{name}']";
            await chromium.Until(d => d.FindElements(By.CssSelector($"{panel} [data-element='members'] td")).Any(td => td.Text.Contains("Up")), Wait,
                "the islands table lists the island's member, up");
            var cookie = page.Manage().Cookies.GetCookieNamed(ViewerEndpoints.CookieName);
            Assert.True(cookie is { IsHttpOnly: true, SameSite: "Strict" }, $"session cookie {cookie}");
            Assert.False((bool)((IJavaScriptExecutor)page).ExecuteScript("return document.cookie.includes('islands-viewer')")!,
                "the page's scripts cannot read the session cookie");

            int Points() => int.Parse(page.FindElement(By.CssSelector($"{panel} [data-element='loss-curve'] svg")).GetAttribute("data-points")!);
            // The page redraws a panel's elements as updates come: every read of one is inside Until, which retries a replaced element.
            var first = (await chromium.Until(_ => Points() is var n and >= 2 ? n : (int?)null, Wait, "a loss curve"))!.Value;
            await chromium.Until(_ => Points() > first, Wait, $"the loss curve growing past {first} points");
            await chromium.Until(d => d.FindElement(By.CssSelector(panel)).GetAttribute("data-health") == "ok"
                && d.FindElement(By.CssSelector($"{panel} [data-element='phase']")).Text.Contains("training"), Wait, "the training island healthy");
            chromium.Screenshot("island-training");

            // The ensemble's gallery, drawn through the serving node's router when it first sees the published experts.
            await chromium.Until(d => (bool)((IJavaScriptExecutor)d).ExecuteScript(
                "const i = document.querySelector(\"[data-panel='ensemble'] [data-element='grid-ensemble'] img\"); return !!i && i.complete && i.naturalWidth > 0;")!,
                Wait, "the ensemble's sample grid, loaded");
            var form = page.FindElement(By.CssSelector("[data-panel='ensemble'] [data-element='generate']"));
            foreach (var (field, value) in new[] { ("count", "3"), ("steps", "6"), ("seed", "7") })
            {
                var input = form.FindElement(By.Name(field));
                input.Clear();
                input.SendKeys(value);
            }
            form.FindElement(By.CssSelector("button[type=submit]")).Click();
            var heatmap = await chromium.Until(d => d.FindElements(By.CssSelector("[data-testid='routing-heatmap']")).FirstOrDefault(), Wait,
                "the generation's routing heatmap");
            Assert.Equal("3", heatmap.GetAttribute("data-images"));
            Assert.Equal("6", heatmap.GetAttribute("data-steps"));
            var experts = heatmap.FindElements(By.CssSelector("rect")).Select(r => int.Parse(r.GetAttribute("data-expert")!)).ToList();
            Assert.Equal(18, experts.Count);
            Assert.All(experts, k => Assert.InRange(k, 0, 3));
            var images = page.FindElements(By.CssSelector("[data-testid='generated-images'] img"));
            Assert.Equal(3, images.Count);
            foreach (var image in images)
            {
                var src = image.GetAttribute("src")!;
                using var decoded = Image.Load<L8>(Convert.FromBase64String(src[(src.IndexOf(',') + 1)..]));
                var pixels = new byte[decoded.Width * decoded.Height];
                decoded.CopyPixelDataTo(pixels);
                Assert.True(pixels.Distinct().Count() > 8, "a generated image is not one flat colour");
            }
            chromium.Screenshot("generation");

            await island.Nodes[0].KillAsync();
            await chromium.Until(d => d.FindElement(By.CssSelector(panel)).GetAttribute("data-health") == "down", Wait, "the killed island red");
            await chromium.Until(d => d.FindElement(By.CssSelector(panel)).Text.Contains("not answering"), Wait, "the killed node named");
            chromium.Screenshot("island-killed");
            island.Nodes.Add(await LocalIsland.StartNodeAsync(name, island.Nodes[0].Settings.Port, null, store, Path.Combine(store, $"{name}.json"),
                "sqlite", null, "expert:0"));
            await chromium.Until(d => d.FindElement(By.CssSelector(panel)).GetAttribute("data-health") == "ok", Wait, "the island recovered");
            await chromium.Until(d => d.FindElement(By.CssSelector($"{panel} [data-element='recoveries'] .value")).Text.StartsWith("1 resumed",
                StringComparison.Ordinal), Wait, "the recovery counted");
            chromium.Screenshot("island-recovered");

            // A page loaded before the node changed its protocol (an upgrade or a rollback while it was open) says so.
            ((IJavaScriptExecutor)page).ExecuteScript($"window.islandsViewer.expectedProtocol = {ViewerProtocol.Version + 1}; window.islandsViewer.reconnect();");
            await chromium.Until(d => d.FindElement(By.CssSelector("[data-testid='protocol-mismatch']")) is { Displayed: true } banner
                && banner.Text.Contains($"protocol {ViewerProtocol.Version + 1}") && banner.Text.Contains($"server speaks protocol {ViewerProtocol.Version}"),
                Wait, "the protocol-mismatch message");
            chromium.Screenshot("protocol-mismatch");

            // The key went once, in a POST body: no log line carries it.
            Assert.DoesNotContain(log.Lines, l => l.Contains(ServingTestStore.ApiKey, StringComparison.Ordinal));
        }
        finally
        {
            output.WriteLine($"screenshots in {artefacts}: {string.Join(", ", Directory.GetFiles(artefacts).Select(Path.GetFileName))}");
        }
    }
}
