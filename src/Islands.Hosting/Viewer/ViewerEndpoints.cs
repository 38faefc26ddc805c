using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using System.Security.Claims;
using System.Text.Json;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Islands.Hosting.Viewer;

/// <summary>
/// The viewer's HTTP side, on its own listener (loopback unless configured otherwise): the page and its modules
/// (embedded in this assembly, so a node needs no internet and no CDN), a login that exchanges an API key for an
/// HttpOnly, SameSite=Strict session cookie (the key travels once, in a POST body, and never in a URL or a log), the
/// event stream of panels, and the panels' images. With the session cookie the page calls the public API (/v1) as a key
/// holder would.
/// </summary>
public static class ViewerEndpoints
{
    public const string CookieScheme = "ViewerSession";
    public const string CookieName = "islands-viewer";
    /// <summary>The default scheme: a bearer key when the request has an Authorization header, else the viewer's session cookie.</summary>
    public const string KeyOrSessionScheme = "ApiKeyOrViewerSession";
    public const string Route = "/viewer";
    private static readonly TimeSpan Heartbeat = TimeSpan.FromSeconds(15);

    private static readonly Dictionary<string, string> ContentTypes = new(StringComparer.Ordinal)
    {
        [".html"] = "text/html; charset=utf-8",
        [".js"] = "text/javascript; charset=utf-8",
        [".css"] = "text/css; charset=utf-8",
        [".svg"] = "image/svg+xml",
    };

    public sealed record Login(string? Key);

    public sealed record Session(int Protocol, string Server, string KeyId);

    /// <summary>The address of the viewer's listener, the second one the server lists.</summary>
    public sealed class Listener(IServer server)
    {
        private int? port;

        public string Address => server.Features.Get<IServerAddressesFeature>()!.Addresses.ElementAt(1);

        public bool Serves(HttpContext http)
        {
            port ??= new Uri(Address).Port;
            return http.Connection.LocalPort == port;
        }
    }

    public static void AddAuthentication(AuthenticationBuilder authentication)
    {
        authentication.Services.AddDataProtection().UseEphemeralDataProtectionProvider();
        authentication.AddCookie(CookieScheme, o =>
        {
            o.Cookie.Name = CookieName;
            o.Cookie.HttpOnly = true;
            o.Cookie.SameSite = SameSiteMode.Strict;
            o.Cookie.SecurePolicy = CookieSecurePolicy.SameAsRequest;
            o.ExpireTimeSpan = TimeSpan.FromHours(12);
            o.SlidingExpiration = true;
            // An API answers 401 and 403; it never redirects to a login page.
            o.Events.OnRedirectToLogin = c =>
            {
                c.Response.StatusCode = StatusCodes.Status401Unauthorized;
                return Task.CompletedTask;
            };
            o.Events.OnRedirectToAccessDenied = c =>
            {
                c.Response.StatusCode = StatusCodes.Status403Forbidden;
                return Task.CompletedTask;
            };
        });
        authentication.AddPolicyScheme(KeyOrSessionScheme, "API key or viewer session", o => o.ForwardDefaultSelector = http =>
            http.Request.Headers.Authorization.Count == 0 && http.Request.Cookies.ContainsKey(CookieName)
                ? CookieScheme
                : ApiKeyAuthentication.SchemeName);
    }

    public static void AddServices(IServiceCollection services)
    {
        services.AddSingleton(sp => new ViewerHub(sp.GetRequiredService<IOptions<JsonOptions>>().Value.SerializerOptions));
        services.AddSingleton<ViewerImages>();
        services.AddSingleton<Listener>();
        // Short timeouts and no retries: the next round, a second later, is the retry.
        services.AddHttpClient(ViewerFeed.ClientName, c => c.Timeout = TimeSpan.FromSeconds(3));
        services.AddHostedService<ViewerFeed>();
    }

    public static void Map(WebApplication app, ServingNodeSettings settings)
    {
        var viewer = app.MapGroup(Route).AddEndpointFilter(async (context, next) =>
            context.HttpContext.RequestServices.GetRequiredService<Listener>().Serves(context.HttpContext)
                ? await next(context)
                : Results.Problem(statusCode: 404, title: "Not here", detail: "the viewer is served on its own address (islands:serving:viewer)"));
        // The page's URLs are relative to /viewer/: /viewer (the same route to ASP.NET Core) is sent there.
        viewer.MapGet("/", (HttpContext http) => http.Request.Path.Value!.EndsWith('/') ? Asset(http, "index.html") : Results.Redirect(Route + "/"))
            .AllowAnonymous().ExcludeFromDescription();
        viewer.MapGet("/assets/{file}", (HttpContext http, string file) => Asset(http, file)).AllowAnonymous().ExcludeFromDescription();
        viewer.MapPost("/session", (HttpContext http, Login login) => SignIn(http, login, settings)).AllowAnonymous().ExcludeFromDescription();
        viewer.MapDelete("/session", async (HttpContext http) =>
        {
            await http.SignOutAsync(CookieScheme);
            return Results.NoContent();
        }).AllowAnonymous().ExcludeFromDescription();
        viewer.MapGet("/session", (HttpContext http) => Results.Json(new Session(ViewerProtocol.Version, settings.Name,
            http.User.FindFirst(ApiKeyAuthentication.KeyIdClaim)?.Value ?? "anonymous"))).ExcludeFromDescription();
        viewer.MapGet("/events", (ViewerHub hub, CancellationToken cancel) => TypedResults.ServerSentEvents(Stream(hub, settings.Name, cancel)))
            .ExcludeFromDescription();
        viewer.MapGet("/images/{file}", (HttpContext http, string file, ViewerImages images) =>
        {
            if (!file.EndsWith(".png", StringComparison.Ordinal) || images.Get(file[..^4]) is not { } png)
                return Results.Problem(statusCode: 404, title: "No such image", detail: "the viewer keeps only its newest images; reload the page");
            http.Response.Headers.CacheControl = "private, max-age=31536000, immutable";
            return Results.Bytes(png, "image/png");
        }).ExcludeFromDescription();
    }

    private static async Task<IResult> SignIn(HttpContext http, Login login, ServingNodeSettings settings)
    {
        var digest = ApiKeyAuthentication.Digest(login.Key?.Trim() ?? "");
        // The API scheme's own digests and comparison: the viewer accepts exactly the keys the API does.
        var keys = http.RequestServices.GetRequiredService<IOptionsMonitor<ApiKeyOptions>>().Get(ApiKeyAuthentication.SchemeName);
        var known = ApiKeyAuthentication.Matches(keys.KeyDigests, digest);
        if (!known && !settings.AllowAnonymous)
            return Results.Problem(statusCode: 401, title: "Unknown API key",
                detail: "that is not one of this node's API keys (islands:serving:apiKeys)");
        var identity = new ClaimsIdentity([new Claim(ApiKeyAuthentication.KeyIdClaim, known ? ApiKeyAuthentication.KeyId(digest) : "anonymous")],
            CookieScheme);
        await http.SignInAsync(CookieScheme, new ClaimsPrincipal(identity));
        return Results.NoContent();
    }

    private static IResult Asset(HttpContext http, string file)
    {
        var extension = Path.GetExtension(file);
        var stream = ContentTypes.TryGetValue(extension, out var type)
            ? typeof(ViewerEndpoints).Assembly.GetManifestResourceStream("viewer/" + file) : null;
        if (stream is null) return Results.Problem(statusCode: 404, title: "No such file", detail: $"the viewer has no {file}");
        // The page and its modules must come from the same build as the server's event stream: never from a stale cache.
        http.Response.Headers.CacheControl = "no-cache";
        http.Response.Headers.ContentSecurityPolicy =
            "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; connect-src 'self'; frame-ancestors 'none'";
        http.Response.Headers.XContentTypeOptions = "nosniff";
        return Results.Stream(stream, type);
    }

    private static async IAsyncEnumerable<SseItem<ViewerMessage>> Stream(ViewerHub hub, string server,
        [EnumeratorCancellation] CancellationToken cancel)
    {
        using var subscriber = hub.Subscribe();
        yield return new SseItem<ViewerMessage>(new ViewerMessage(ViewerProtocol.Version, "hello", Server: server, Groups: ViewerPanels.Groups));
        while (!cancel.IsCancellationRequested)
        {
            var changes = await subscriber.NextAsync(Heartbeat, cancel);
            if (changes.Count == 0) yield return new SseItem<ViewerMessage>(new ViewerMessage(ViewerProtocol.Version, "heartbeat"));
            foreach (var (id, panel) in changes)
                yield return new SseItem<ViewerMessage>(panel is null
                    ? new ViewerMessage(ViewerProtocol.Version, "removed", Removed: id)
                    : new ViewerMessage(ViewerProtocol.Version, "panel", panel));
        }
    }
}
