using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Islands.Diffusion;

namespace Islands.Hosting;

/// <summary>What <see cref="TlsCertificateFile.Ensure"/> found or made.</summary>
public sealed record TlsCertificateInfo(string Path, string Subject, string Thumbprint, DateTimeOffset NotAfter, bool Created);

/// <summary>
/// The remoting certificate of a deployment (a PKCS#12 file): created self-signed when absent, kept when present and
/// readable with the password, so that a one-shot init container can run on every start without changing what the
/// nodes pin. Written to a temporary name and renamed, so a node never reads half a file.
/// </summary>
public static class TlsCertificateFile
{
    public static TlsCertificateInfo Ensure(string path, string password, string subject, TimeSpan validity)
    {
        if (string.IsNullOrEmpty(password))
            throw new ConfigException("ISLANDS_TLS_PASSWORD", "the certificate's password is empty: set ISLANDS_TLS_PASSWORD");
        if (File.Exists(path))
        {
            X509Certificate2 existing;
            try
            {
                existing = X509CertificateLoader.LoadPkcs12FromFile(path, password);
            }
            catch (CryptographicException e)
            {
                throw new IslandsException($"{path}: exists but is not a PKCS#12 file this password opens ({e.Message}); it is kept, remove it to " +
                    "create a new one");
            }
            using (existing) return new TlsCertificateInfo(path, existing.Subject, existing.Thumbprint, existing.NotAfter, false);
        }
        X500DistinguishedName name;
        try
        {
            name = new X500DistinguishedName(subject);
        }
        catch (CryptographicException)
        {
            throw new ConfigException("--subject", $"'{subject}' is not a distinguished name such as CN=islands");
        }
        using var key = RSA.Create(3072);
        var request = new CertificateRequest(name, key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        // Server and client authentication: remoting TLS is mutual.
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, true));
        var now = DateTimeOffset.UtcNow;
        using var certificate = request.CreateSelfSigned(now.AddMinutes(-5), now + validity);
        var directory = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        Directory.CreateDirectory(directory);
        var temporary = System.IO.Path.Combine(directory, $".{System.IO.Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        File.WriteAllBytes(temporary, certificate.Export(X509ContentType.Pfx, password));
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(temporary, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
        try
        {
            File.Move(temporary, path, overwrite: false);
        }
        catch (IOException) when (File.Exists(path))
        {
            // Another init created it first: that one is the deployment's certificate.
            File.Delete(temporary);
            return Ensure(path, password, subject, validity);
        }
        return new TlsCertificateInfo(path, certificate.Subject, certificate.Thumbprint, certificate.NotAfter, true);
    }
}
