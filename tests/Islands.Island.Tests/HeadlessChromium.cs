using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;

namespace Islands.Island.Tests;

/// <summary>
/// Debian's chromium, headless, driven through Debian's chromedriver (packages chromium and chromium-driver; .ci/run
/// installs them). No browser download: a machine without them fails here with what to install.
/// </summary>
public sealed class HeadlessChromium : IDisposable
{
    public const string Browser = "/usr/bin/chromium";
    public const string DriverPath = "/usr/bin/chromedriver";

    private readonly string screenshots;
    private int shot;

    public ChromeDriver Driver { get; }

    public HeadlessChromium(string screenshots)
    {
        if (!File.Exists(Browser) || !File.Exists(DriverPath))
            throw new InvalidOperationException($"{Browser} and {DriverPath} are needed for the viewer's browser tests: " +
                "apt-get install chromium chromium-driver (.ci/run installs them)");
        this.screenshots = screenshots;
        Directory.CreateDirectory(screenshots);
        var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(DriverPath)!, Path.GetFileName(DriverPath));
        service.SuppressInitialDiagnosticInformation = true;
        service.HideCommandPromptWindow = true;
        var options = new ChromeOptions { BinaryLocation = Browser };
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1500,1900");
        Driver = new ChromeDriver(service, options, TimeSpan.FromSeconds(90));
    }

    /// <summary>Saves the page as NN-name.png among the test's artefacts and answers its path.</summary>
    public string Screenshot(string name)
    {
        var path = Path.Combine(screenshots, $"{++shot:00}-{name}.png");
        ((ITakesScreenshot)Driver).GetScreenshot().SaveAsFile(path);
        return path;
    }

    /// <summary>Waits for a condition on the page (an element may be replaced while it is read: that is a retry).</summary>
    public async Task<T> Until<T>(Func<IWebDriver, T?> probe, TimeSpan timeout, string what)
    {
        var deadline = DateTime.UtcNow + timeout;
        Exception? last = null;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                if (probe(Driver) is { } value && value is not false) return value;
            }
            catch (Exception e) when (e is NoSuchElementException or StaleElementReferenceException or InvalidOperationException)
            {
                last = e;
            }
            await Task.Delay(200);
        }
        Screenshot("timeout");
        throw new TimeoutException($"not within {timeout.TotalSeconds:0} s: {what}{(last is null ? "" : $" (last: {last.Message})")}");
    }

    public void Dispose()
    {
        Driver.Quit();
        Driver.Dispose();
    }
}
