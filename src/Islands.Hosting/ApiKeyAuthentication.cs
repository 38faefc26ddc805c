using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Islands.Hosting;

/// <summary>
/// Bearer API keys (the serving API, an island's publication). Keys are held only as SHA-256 digests and compared in constant time; a caller is
/// known by a short key id (the digest's first 8 hex digits), which is all that ever reaches logs or traces.
/// </summary>
public sealed class ApiKeyAuthentication(IOptionsMonitor<ApiKeyOptions> options, ILoggerFactory logger, UrlEncoder encoder)
    : AuthenticationHandler<ApiKeyOptions>(options, logger, encoder)
{
    public const string SchemeName = "ApiKey";
    public const string KeyIdClaim = "islands:key-id";

    public static byte[] Digest(string key) => SHA256.HashData(Encoding.UTF8.GetBytes(key));

    public static string KeyId(byte[] digest) => Convert.ToHexStringLower(digest)[..8];

    /// <summary>Creates a key file with one random key, readable by its owner only, unless it exists (demo and local clusters).</summary>
    public static void EnsureKeyFile(string path)
    {
        if (File.Exists(path)) return;
        Diffusion.IO.AtomicFile.WriteAllText(path, Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24)) + "\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    /// <summary>Whether a key's digest is one of the known ones, compared in constant time against every one.</summary>
    public static bool Matches(IReadOnlyList<byte[]> known, byte[] digest)
    {
        var match = false;
        foreach (var candidate in known) match |= CryptographicOperations.FixedTimeEquals(candidate, digest);
        return match;
    }

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        if (Options.AllowAnonymous) return Task.FromResult(Success("anonymous"));
        string? header = Request.Headers.Authorization;
        if (string.IsNullOrEmpty(header)) return Task.FromResult(AuthenticateResult.NoResult());
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            return Task.FromResult(AuthenticateResult.Fail("the Authorization header is not a Bearer token"));
        var digest = Digest(header["Bearer ".Length..].Trim());
        return Task.FromResult(Matches(Options.KeyDigests, digest) ? Success(KeyId(digest)) : AuthenticateResult.Fail("unknown API key"));
    }

    private AuthenticateResult Success(string keyId)
    {
        var identity = new ClaimsIdentity([new Claim(KeyIdClaim, keyId)], SchemeName);
        return AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName));
    }

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        Response.StatusCode = StatusCodes.Status401Unauthorized;
        Response.Headers.WWWAuthenticate = "Bearer";
        await Results.Problem(statusCode: 401, title: "API key required",
            detail: Options.ChallengeDetail).ExecuteAsync(Context);
    }
}

public sealed class ApiKeyOptions : AuthenticationSchemeOptions
{
    /// <summary>SHA-256 digests of the accepted keys.</summary>
    public IReadOnlyList<byte[]> KeyDigests { get; set; } = [];
    public bool AllowAnonymous { get; set; }
    /// <summary>What a 401 tells the caller to do.</summary>
    public string ChallengeDetail { get; set; } = "send 'Authorization: Bearer <key>' with a key from ISLANDS_API_KEYS (health endpoints need none)";
}
