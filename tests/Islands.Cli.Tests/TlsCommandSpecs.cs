using System.Security.Cryptography.X509Certificates;

namespace Islands.Cli.Tests;

/// <summary>`islands tls create`, as compose's tls-init runs it: creates once, keeps after, refuses what it cannot open.</summary>
public sealed class TlsCommandSpecs
{
    private static readonly Dictionary<string, string> Password = new() { ["ISLANDS_TLS_PASSWORD"] = "compose-password" };

    [Fact]
    public void Should_create_a_certificate_for_mutual_tls_once_and_keep_it_on_every_later_run()
    {
        var file = Path.Combine(CliRunner.TempDir("tls"), "certs", "islands.pfx");
        var created = CliRunner.RunProcess(Password, "--json", "tls", "create", "--out", file, "--subject", "CN=islands-test");
        Assert.True(created.ExitCode == 0, created.Stderr);
        var thumbprint = created.Json.GetProperty("thumbprint").GetString();
        Assert.True(created.Json.GetProperty("created").GetBoolean());

        using var certificate = X509CertificateLoader.LoadPkcs12FromFile(file, "compose-password");
        Assert.True(certificate.HasPrivateKey);
        Assert.Equal(thumbprint, certificate.Thumbprint);
        Assert.Equal("CN=islands-test", certificate.Subject);
        var usages = certificate.Extensions.OfType<X509EnhancedKeyUsageExtension>().Single().EnhancedKeyUsages.Cast<System.Security.Cryptography.Oid>().Select(o => o.Value);
        Assert.Equal(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"], usages.Order());
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(file)!, "*.tmp", SearchOption.AllDirectories));

        var kept = CliRunner.RunProcess(Password, "tls", "create", "--out", file);
        Assert.True(kept.ExitCode == 0, kept.Stderr);
        Assert.Contains($"kept {file}", kept.Stdout);
        Assert.Contains(thumbprint!, kept.Stdout);
    }

    [Fact]
    public void Should_refuse_an_empty_password_and_a_file_the_password_does_not_open_and_keep_the_file()
    {
        var file = Path.Combine(CliRunner.TempDir("tls-bad"), "islands.pfx");
        var noPassword = CliRunner.RunProcess("tls", "create", "--out", file);
        Assert.NotEqual(0, noPassword.ExitCode);
        Assert.Contains("ISLANDS_TLS_PASSWORD", noPassword.Stderr);
        Assert.False(File.Exists(file));

        File.WriteAllText(file, "not a certificate");
        var wrong = CliRunner.RunProcess(Password, "tls", "create", "--out", file);
        Assert.NotEqual(0, wrong.ExitCode);
        Assert.Contains(file, wrong.Stderr);
        Assert.Contains("remove it", wrong.Stderr);
        Assert.Equal("not a certificate", File.ReadAllText(file));

        var badSubject = CliRunner.RunProcess(Password, "tls", "create", "--out", file + "2", "--subject", "=");
        Assert.NotEqual(0, badSubject.ExitCode);
        Assert.Contains("--subject", badSubject.Stderr);
    }
}
