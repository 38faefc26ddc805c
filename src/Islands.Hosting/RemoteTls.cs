using System.Security.Cryptography.X509Certificates;
using Akka.Remote.Hosting;
using Akka.Remote.Transport.DotNetty;
using Islands.Hosting.Configuration;

namespace Islands.Hosting;

/// <summary>
/// Remoting over TLS, the same for island and serving nodes: mutual authentication, and a peer is accepted only when
/// its certificate's thumbprint is trusted (by default the node's own, so the nodes sharing one certificate trust each
/// other and nothing else; list the islands' and serving's thumbprints to let islands announce to serving).
/// </summary>
public static class RemoteTls
{
    /// <summary>Checks <c>{section}:tls</c>; a missing certificate file is an error only when TLS is on.</summary>
    public static TlsSettings Check(SettingChecks checks, Configuration.TlsOptions options)
    {
        var tls = new TlsSettings(checks.Switch("tls:enabled", options.Enabled), options.Certificate ?? "", options.Password ?? "",
            [.. options.TrustedThumbprints]);
        if (tls.Enabled && !File.Exists(tls.Certificate))
            checks.Fail("tls:certificate", $"'{tls.Certificate}': certificate file not found (TLS is enabled)");
        return tls;
    }

    public static RemoteOptions Apply(RemoteOptions options, TlsSettings tls)
    {
        if (!tls.Enabled) return options;
        var certificate = X509CertificateLoader.LoadPkcs12FromFile(tls.Certificate, tls.Password);
        var trusted = tls.TrustedThumbprints.Count > 0 ? tls.TrustedThumbprints.ToArray() : [certificate.Thumbprint];
        options.EnableSsl = true;
        options.Ssl = new SslOptions
        {
            X509Certificate = certificate,
            SuppressValidation = false,
            RequireMutualAuthentication = true,
            ValidateCertificateHostname = false,
            // Often self-signed and shared by the nodes of one cluster: trust exactly the configured thumbprints.
            CustomValidator = CertificateValidation.PinnedCertificate(trusted),
        };
        return options;
    }
}
