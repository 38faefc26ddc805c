namespace Islands.Cli.Tests;

/// <summary><c>islands methods</c>: the registered methods, each with its typed config's defaults.</summary>
public sealed class MethodsCommandSpecs
{
    [Fact]
    public async Task Should_list_every_registered_method_with_its_config_type()
    {
        var text = await CliRunner.RunAsync("methods");
        Assert.Equal(0, text.ExitCode);
        foreach (var (name, config) in new[] { ("expert", "TrainConfig"), ("monolith", "TrainConfig"), ("router", "RouterConfig"),
            ("sds", "DistillConfig"), ("nfsd", "DistillConfig"), ("bridge", "DistillConfig") })
            Assert.Matches($@"(?m)^{name}\s+{config}\s+\S", text.Stdout);

        var json = await CliRunner.RunAsync("methods", "--json");
        var names = json.Json.EnumerateArray().Select(m => m.GetProperty("name").GetString()).ToList();
        Assert.Equal(["expert", "monolith", "router", "sds", "nfsd", "bridge"], names);
    }

    [Fact]
    public async Task Should_show_a_methods_defaults_as_its_config_json_and_name_the_registered_ones_for_an_unknown_name()
    {
        var router = await CliRunner.RunAsync("methods", "router", "--json");
        Assert.Equal(0, router.ExitCode);
        var defaults = router.Json.GetProperty("defaults");
        Assert.Equal("router", defaults.GetProperty("job").GetString());
        Assert.Equal(256, defaults.GetProperty("hidden").GetInt32());
        var monolith = await CliRunner.RunAsync("methods", "monolith", "--json");
        Assert.Equal("monolith", monolith.Json.GetProperty("defaults").GetProperty("job").GetString());
        Assert.Equal(2000, monolith.Json.GetProperty("defaults").GetProperty("steps").GetInt32());

        var unknown = await CliRunner.RunAsync("methods", "nerfacto");
        Assert.NotEqual(0, unknown.ExitCode);
        Assert.Contains("'nerfacto' is not a method", unknown.Stderr);
        Assert.Contains("expert, monolith, router", unknown.Stderr);
    }
}
