namespace Islands.Diffusion.Data;

/// <summary>
/// A small dataset the project draws itself (28x28 grey shapes in 10 classes, jittered in position, size, brightness
/// and noise), so that the demo and a first try work on a machine without Fashion-MNIST. Deterministic for a seed.
/// </summary>
public static class SyntheticShapes
{
    public static readonly IReadOnlyList<string> Classes =
        ["square", "frame", "disc", "ring", "bar", "column", "cross", "diagonal", "triangle", "dots"];

    public static (LabeledImages Train, LabeledImages Test) Generate(int trainCount = 12_000, int testCount = 2_000, int seed = 0) =>
        (Draw(trainCount, new Random(seed)), Draw(testCount, new Random(seed + 1)));

    private static LabeledImages Draw(int count, Random random)
    {
        const int size = 28;
        var pixels = new byte[count * size * size];
        var labels = new byte[count];
        for (var n = 0; n < count; n++)
        {
            var label = n % Classes.Count;
            labels[n] = (byte)label;
            var cx = 14 + random.NextDouble() * 6 - 3;
            var cy = 14 + random.NextDouble() * 6 - 3;
            var r = 6 + random.NextDouble() * 4;
            var brightness = 170 + random.Next(86);
            for (var y = 0; y < size; y++)
            for (var x = 0; x < size; x++)
            {
                double dx = x - cx, dy = y - cy;
                var d = Math.Sqrt(dx * dx + dy * dy);
                var inside = label switch
                {
                    0 => Math.Abs(dx) < r && Math.Abs(dy) < r,
                    1 => Math.Max(Math.Abs(dx), Math.Abs(dy)) is var m && m < r && m > r - 2.2,
                    2 => d < r,
                    3 => d < r && d > r - 2.5,
                    4 => Math.Abs(dy) < 2.2 && Math.Abs(dx) < r + 2,
                    5 => Math.Abs(dx) < 2.2 && Math.Abs(dy) < r + 2,
                    6 => (Math.Abs(dx) < 1.8 || Math.Abs(dy) < 1.8) && Math.Abs(dx) < r && Math.Abs(dy) < r,
                    7 => Math.Abs(dx - dy) < 2.2 && Math.Abs(dx) < r,
                    8 => dy < r * 0.8 && dy > -r && Math.Abs(dx) < (dy + r) * 0.6,
                    _ => Math.Min(Math.Sqrt((dx - r * 0.6) * (dx - r * 0.6) + dy * dy), Math.Sqrt((dx + r * 0.6) * (dx + r * 0.6) + dy * dy)) < 3,
                };
                var value = (inside ? brightness : 0) + random.Next(-12, 13);
                pixels[n * size * size + y * size + x] = (byte)Math.Clamp(value, 0, 255);
            }
        }
        return new LabeledImages(pixels, labels, 1, size, size);
    }
}
