using System.Security.Cryptography.X509Certificates;
using Akka.Configuration;
using Akka.Remote.Hosting;
using Akka.Remote.Transport.DotNetty;
using Islands.Diffusion;

namespace Islands.Hosting;

/// <summary>
/// Remoting over TLS, the same for island and serving nodes: mutual authentication, and a peer is accepted only when
/// its certificate's thumbprint is trusted (by default the node's own, so the nodes sharing one certificate trust each
/// other and nothing else; list the islands' and serving's thumbprints to let islands announce to serving).
/// </summary>
public static class RemoteTls
{
    /// <summary>Reads <c>{prefix}tls.*</c>; a missing certificate file is an error only when TLS is on.</summary>
    public static TlsSettings Parse(Config config, string prefix)
    {
        var key = prefix + "tls.";
        var tls = new TlsSettings(IslandNodeConfig.Bool(config, key + "enabled"), config.GetString(key + "certificate", ""),
            config.GetString(key + "password", ""), [.. config.GetStringList(key + "trusted-thumbprints") ?? []]);
        if (tls.Enabled && !File.Exists(tls.Certificate))
            throw new ConfigException(key + "certificate", $"'{tls.Certificate}': certificate file not found (TLS is enabled)");
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
