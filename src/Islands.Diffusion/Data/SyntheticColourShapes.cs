namespace Islands.Diffusion.Data;

/// <summary>
/// A colour dataset the project draws itself, 3 × 24 × 32 (height × width: not square), so that colour and non-square
/// images are exercised end to end: six classes, each a shape in its own colour on a dark, noisy background, jittered
/// in position, size and brightness. Deterministic for a seed.
/// </summary>
public static class SyntheticColourShapes
{
    public const int Height = 24;
    public const int Width = 32;

    public static readonly IReadOnlyList<string> Classes = ["red square", "green disc", "blue bar", "yellow ring", "magenta cross", "cyan column"];

    private static readonly (double R, double G, double B)[] Colours = [(1, 0.15, 0.1), (0.15, 1, 0.2), (0.2, 0.3, 1), (1, 0.9, 0.1), (1, 0.1, 0.9),
        (0.1, 0.9, 1)];

    public static (LabeledImages Train, LabeledImages Test) Generate(int trainCount = 6_000, int testCount = 1_200, int seed = 0) =>
        (Draw(trainCount, new Random(seed)), Draw(testCount, new Random(seed + 1)));

    private static LabeledImages Draw(int count, Random random)
    {
        const int plane = Height * Width;
        var pixels = new byte[count * 3 * plane];
        var labels = new byte[count];
        for (var n = 0; n < count; n++)
        {
            var label = n % Classes.Count;
            labels[n] = (byte)label;
            var cx = Width / 2.0 + random.NextDouble() * 10 - 5;
            var cy = Height / 2.0 + random.NextDouble() * 6 - 3;
            var r = 5 + random.NextDouble() * 3;
            var brightness = 170 + random.Next(86);
            var colour = Colours[label];
            for (var y = 0; y < Height; y++)
            for (var x = 0; x < Width; x++)
            {
                double dx = x - cx, dy = y - cy;
                var d = Math.Sqrt(dx * dx + dy * dy);
                var inside = label switch
                {
                    0 => Math.Abs(dx) < r && Math.Abs(dy) < r,
                    1 => d < r,
                    2 => Math.Abs(dy) < 2.2 && Math.Abs(dx) < r + 4,
                    3 => d < r && d > r - 2.5,
                    4 => (Math.Abs(dx) < 1.8 || Math.Abs(dy) < 1.8) && Math.Abs(dx) < r && Math.Abs(dy) < r,
                    _ => Math.Abs(dx) < 2.2 && Math.Abs(dy) < r + 2,
                };
                var offset = n * 3 * plane + y * Width + x;
                var channel = 0;
                foreach (var weight in new[] { colour.R, colour.G, colour.B })
                {
                    var value = (inside ? brightness * weight : 20) + random.Next(-12, 13);
                    pixels[offset + channel++ * plane] = (byte)Math.Clamp(value, 0, 255);
                }
            }
        }
        return new LabeledImages(pixels, labels, 3, Height, Width);
    }
}
