using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Islands.Diffusion.IO;

/// <summary>
/// Writes a non-finite <see cref="float"/> or <see cref="double"/> (NaN, ±Infinity), nullable or not, as JSON <c>null</c>
/// instead of failing (System.Text.Json refuses to write NaN by default) or writing a string that most JSON readers take
/// for text. Reads <c>null</c> back as NaN where the target cannot be null (a nullable target reads null as null), and,
/// for files written before this converter, the strings "NaN", "Infinity" and "-Infinity" as the values they name.
/// </summary>
public sealed class NonFiniteAsNullConverter : JsonConverterFactory
{
    public static readonly NonFiniteAsNullConverter Instance = new();

    public override bool CanConvert(Type typeToConvert) =>
        typeToConvert == typeof(double) || typeToConvert == typeof(float) || typeToConvert == typeof(double?) || typeToConvert == typeof(float?);

    public override JsonConverter CreateConverter(Type typeToConvert, JsonSerializerOptions options) =>
        typeToConvert == typeof(double) ? DoubleConverter.Instance
        : typeToConvert == typeof(float) ? SingleConverter.Instance
        : typeToConvert == typeof(double?) ? NullableDoubleConverter.Instance
        : typeToConvert == typeof(float?) ? NullableSingleConverter.Instance
        : throw new ArgumentOutOfRangeException(nameof(typeToConvert), typeToConvert, "only float and double (and their nullables)");

    /// <summary>The value at the reader, or null for a JSON null.</summary>
    private static double? ReadDouble(ref Utf8JsonReader reader, Type target)
    {
        switch (reader.TokenType)
        {
            case JsonTokenType.Null:
                return null;
            case JsonTokenType.Number:
                return reader.GetDouble();
            case JsonTokenType.String:
                var text = reader.GetString();
                return text switch
                {
                    "NaN" => double.NaN,
                    "Infinity" => double.PositiveInfinity,
                    "-Infinity" => double.NegativeInfinity,
                    // JsonSerializerDefaults.Web reads numbers written as strings; keep doing so.
                    _ when double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var parsed) && double.IsFinite(parsed)
                        => parsed,
                    _ => throw new JsonException($"'{text}' is not a number (expected a number, null, \"NaN\", \"Infinity\" or \"-Infinity\" for " +
                        $"{target.Name})"),
                };
            default:
                throw new JsonException($"{reader.TokenType} is not a number (expected a number or null for {target.Name})");
        }
    }

    private static float? ReadSingle(ref Utf8JsonReader reader, Type target) =>
        reader.TokenType == JsonTokenType.Number ? reader.GetSingle() : (float?)ReadDouble(ref reader, target);

    private sealed class DoubleConverter : JsonConverter<double>
    {
        public static readonly DoubleConverter Instance = new();
        public override bool HandleNull => true;
        public override double Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
            => ReadDouble(ref reader, typeToConvert) ?? double.NaN;

        public override void Write(Utf8JsonWriter writer, double value, JsonSerializerOptions options)
        {
            if (double.IsFinite(value)) writer.WriteNumberValue(value);
            else writer.WriteNullValue();
        }
    }

    private sealed class SingleConverter : JsonConverter<float>
    {
        public static readonly SingleConverter Instance = new();
        public override bool HandleNull => true;
        public override float Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
            => ReadSingle(ref reader, typeToConvert) ?? float.NaN;

        public override void Write(Utf8JsonWriter writer, float value, JsonSerializerOptions options)
        {
            if (float.IsFinite(value)) writer.WriteNumberValue(value);
            else writer.WriteNullValue();
        }
    }

    private sealed class NullableDoubleConverter : JsonConverter<double?>
    {
        public static readonly NullableDoubleConverter Instance = new();
        public override bool HandleNull => true;
        public override double? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
            => ReadDouble(ref reader, typeToConvert);

        public override void Write(Utf8JsonWriter writer, double? value, JsonSerializerOptions options)
        {
            if (value is { } v && double.IsFinite(v)) writer.WriteNumberValue(v);
            else writer.WriteNullValue();
        }
    }

    private sealed class NullableSingleConverter : JsonConverter<float?>
    {
        public static readonly NullableSingleConverter Instance = new();
        public override bool HandleNull => true;
        public override float? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
            => ReadSingle(ref reader, typeToConvert);

        public override void Write(Utf8JsonWriter writer, float? value, JsonSerializerOptions options)
        {
            if (value is { } v && float.IsFinite(v)) writer.WriteNumberValue(v);
            else writer.WriteNullValue();
        }
    }
}
