using System.Text.Json;
using Islands.Diffusion.Checkpoints;
using Islands.Diffusion.IO;

namespace Islands.Diffusion.Tests;

/// <summary>Every JSON Islands writes holds a non-finite number as null, and reads null (or the old "NaN" strings) back.</summary>
public sealed class NonFiniteJsonSpecs
{
    public sealed record Sample(double D, float F, double? Nd, float? Nf, float[] History, IReadOnlyList<double> Curve);

    [Fact]
    public void Should_write_non_finite_numbers_as_null_and_read_them_back()
    {
        var value = new Sample(double.NaN, float.PositiveInfinity, double.NegativeInfinity, float.NaN, [0.5f, float.NaN, float.NegativeInfinity], [1.25, double.PositiveInfinity]);
        var text = Json.Serialize(value, indented: false);
        Assert.Equal("""{"d":null,"f":null,"nd":null,"nf":null,"history":[0.5,null,null],"curve":[1.25,null]}""", text);

        var back = JsonSerializer.Deserialize<Sample>(text, Json.Options)!;
        // Where the type cannot be null, null reads as NaN (the value is known to be bad); a nullable reads null as null.
        Assert.True(double.IsNaN(back.D));
        Assert.True(float.IsNaN(back.F));
        Assert.Null(back.Nd);
        Assert.Null(back.Nf);
        Assert.Equal(0.5f, back.History[0]);
        Assert.True(float.IsNaN(back.History[1]) && float.IsNaN(back.History[2]));
        Assert.Equal(1.25, back.Curve[0]);
        Assert.True(double.IsNaN(back.Curve[1]));
    }

    [Fact]
    public void Should_round_trip_finite_numbers_exactly()
    {
        var value = new Sample(0.1 + 0.2, 1.0f / 3, -1e-300, 3.4e38f, [float.Epsilon, -0f, 123456.789f], [double.MaxValue, double.MinValue]);
        var back = JsonSerializer.Deserialize<Sample>(Json.Serialize(value), Json.Options)!;
        Assert.Equal(value.D, back.D);
        Assert.Equal(value.F, back.F);
        Assert.Equal(value.Nd, back.Nd);
        Assert.Equal(value.Nf, back.Nf);
        Assert.Equal(value.History, back.History);
        Assert.Equal(value.Curve, back.Curve);
    }

    [Fact]
    public void Should_read_files_written_with_named_literals_before_the_converter()
    {
        // What Json.Options wrote before (AllowNamedFloatingPointLiterals), e.g. a state.json loss history or a manifest.
        const string old = """{"d":"NaN","f":"Infinity","nd":"-Infinity","nf":"NaN","history":[0.25,"NaN","-Infinity"],"curve":["Infinity",2]}""";
        var back = JsonSerializer.Deserialize<Sample>(old, Json.Options)!;
        Assert.True(double.IsNaN(back.D));
        Assert.Equal(float.PositiveInfinity, back.F);
        Assert.Equal(double.NegativeInfinity, back.Nd);
        Assert.True(float.IsNaN(back.Nf!.Value));
        Assert.Equal(0.25f, back.History[0]);
        Assert.True(float.IsNaN(back.History[1]));
        Assert.Equal(float.NegativeInfinity, back.History[2]);
        Assert.Equal([double.PositiveInfinity, 2], back.Curve);

        var dir = TestData.TempDir("json-old");
        var path = Path.Combine(dir, CheckpointManifest.FileName);
        File.WriteAllText(path, """{"schemaVersion":1,"step":40,"files":{},"loss":"NaN","createdUtc":"2026-01-01T00:00:00+00:00"}""");
        var manifest = Json.Read<CheckpointManifest>(path);
        Assert.True(float.IsNaN(manifest.Loss!.Value));
        // Written again, the NaN becomes null: valid JSON that any reader takes for "no number".
        Json.WriteAtomic(path, manifest);
        Assert.Equal(JsonValueKind.Null, JsonDocument.Parse(File.ReadAllText(path)).RootElement.GetProperty("loss").ValueKind);
    }

    [Fact]
    public void Should_refuse_text_that_is_not_a_number()
    {
        var e = Assert.Throws<IslandsException>(() =>
        {
            var dir = TestData.TempDir("json-bad");
            var path = Path.Combine(dir, "bad.json");
            File.WriteAllText(path, """{"d":"nan-ish","f":1,"nd":null,"nf":null,"history":[],"curve":[]}""");
            return Json.Read<Sample>(path);
        });
        Assert.Contains("nan-ish", e.Message);
    }

    [Fact]
    public void Should_add_the_converter_once_to_options_it_does_not_own()
    {
        var options = new JsonSerializerOptions(JsonSerializerDefaults.Web);
        Json.WithFiniteNumbers(options);
        Json.WithFiniteNumbers(options);
        Assert.Single(options.Converters, c => c is NonFiniteAsNullConverter);
        Assert.Equal("""{"loss":null}""", JsonSerializer.Serialize(new { loss = float.NaN }, options));
        Assert.Equal("""{"loss":null}""", JsonSerializer.Serialize(new { loss = float.NaN }, Json.Web));
    }
}
