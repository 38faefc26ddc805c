using System.CommandLine;
using Islands.Hosting;

namespace Islands.Cli.Commands;

public static class TlsCommands
{
    public const string PasswordVariable = "ISLANDS_TLS_PASSWORD";

    public static Command Build(TextWriter stdout, TextWriter stderr)
    {
        var tls = new Command("tls", "Remoting certificates (islands:tls, islands:serving:tls)");
        tls.Add(Create(stdout, stderr));
        return tls;
    }

    private static Command Create(TextWriter stdout, TextWriter stderr)
    {
        var output = new Option<string>("--out") { Description = "PKCS#12 file to create; kept as it is when it exists and the password opens it",
            Required = true };
        var subject = new Option<string>("--subject") { Description = "The certificate's subject", DefaultValueFactory = _ => "CN=islands" };
        var days = new Option<int>("--days") { Description = "Days the certificate is valid", DefaultValueFactory = _ => 825 };
        var command = new Command("create", $"Create a self-signed remoting certificate (password from {PasswordVariable}) and print its " +
            "thumbprint, which peers pin")
        {
            output, subject, days,
        };
        command.SetAction(IslandsCli.Action(stdout, stderr, (ctx, parse, _) =>
        {
            if (parse.GetValue(days) is < 1 or > 3650)
                throw new Diffusion.ConfigException("--days", $"{parse.GetValue(days)} must be from 1 to 3650");
            var info = TlsCertificateFile.Ensure(parse.GetValue(output)!, Environment.GetEnvironmentVariable(PasswordVariable) ?? "",
                parse.GetValue(subject)!, TimeSpan.FromDays(parse.GetValue(days)));
            ctx.Result(info, w => w.WriteLine($"{(info.Created ? "created" : "kept")} {info.Path}: {info.Subject}, thumbprint {info.Thumbprint}, " +
                $"valid until {info.NotAfter:yyyy-MM-dd}"));
            return Task.FromResult(ExitCodes.Ok);
        }));
        return command;
    }
}
