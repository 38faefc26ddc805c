using Islands.Diffusion.IO;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace Islands.Diffusion.Imaging;

/// <summary>Writes a batch of images as one PNG grid (atomically: temporary name, then rename).</summary>
public static class ImageGrid
{
    /// <param name="pixels">Raw uint8 images, N x C x H x W (C = 1 grey or 3 RGB).</param>
    public static void SavePng(string path, byte[] pixels, int count, int channels, int height, int width, int columns = 0,
        int padding = 2, int scale = 2)
    {
        using var grid = Render(pixels, count, channels, height, width, columns, padding, scale);
        AtomicFile.Write(path, stream => grid.SaveAsPng(stream));
    }

    /// <summary>The same grid as PNG bytes (for HTTP responses).</summary>
    public static byte[] EncodePng(byte[] pixels, int count, int channels, int height, int width, int columns = 0, int padding = 2, int scale = 2)
    {
        using var grid = Render(pixels, count, channels, height, width, columns, padding, scale);
        using var stream = new MemoryStream();
        grid.SaveAsPng(stream);
        return stream.ToArray();
    }

    /// <summary>
    /// PNG frames of one size as a looping GIF (written atomically), each shown for frameDelay hundredths of a second and
    /// the last held for a second, so a trajectory reads as an animation that pauses on its result.
    /// </summary>
    public static void SaveGif(string path, IReadOnlyList<byte[]> framePngs, int frameDelay = 8)
    {
        if (framePngs.Count == 0) throw new ArgumentException("a GIF needs at least one frame", nameof(framePngs));
        using var gif = Image.Load<Rgba32>(framePngs[0]);
        gif.Metadata.GetGifMetadata().RepeatCount = 0;
        gif.Frames.RootFrame.Metadata.GetGifMetadata().FrameDelay = frameDelay;
        foreach (var png in framePngs.Skip(1))
        {
            using var next = Image.Load<Rgba32>(png);
            if (next.Width != gif.Width || next.Height != gif.Height)
                throw new ConfigException("frames", $"a {next.Width}x{next.Height} frame in a {gif.Width}x{gif.Height} GIF");
            gif.Frames.AddFrame(next.Frames.RootFrame).Metadata.GetGifMetadata().FrameDelay = frameDelay;
        }
        gif.Frames[^1].Metadata.GetGifMetadata().FrameDelay = 100;
        AtomicFile.Write(path, stream => gif.SaveAsGif(stream));
    }

    /// <summary>A PNG's pixels as raw grey bytes (row-major), and its width and height.</summary>
    public static (byte[] Pixels, int Width, int Height) DecodeGrey(byte[] png)
    {
        using var image = Image.Load<L8>(png);
        var pixels = new byte[image.Width * image.Height];
        image.CopyPixelDataTo(pixels);
        return (pixels, image.Width, image.Height);
    }

    /// <summary>The inverse of <see cref="EncodePng"/> for grey grids: the tiles' pixels, [count, height, width] bytes, row-major.</summary>
    public static byte[] DecodeTiles(byte[] png, int count, int height, int width, int columns, int padding = 2, int scale = 2)
    {
        var (grid, gridWidth, gridHeight) = DecodeGrey(png);
        var rows = (count + columns - 1) / columns;
        if (gridWidth != (columns * (width + padding) + padding) * scale || gridHeight != (rows * (height + padding) + padding) * scale)
            throw new ConfigException("grid", $"a {gridWidth}x{gridHeight} image is not a grid of {count} {width}x{height} tiles in " +
                $"{columns} columns");
        var tiles = new byte[count * height * width];
        for (var i = 0; i < count; i++)
        {
            var ox = padding + i % columns * (width + padding);
            var oy = padding + i / columns * (height + padding);
            for (var y = 0; y < height; y++)
            for (var x = 0; x < width; x++)
                tiles[(i * height + y) * width + x] = grid[((oy + y) * scale) * gridWidth + (ox + x) * scale];
        }
        return tiles;
    }

    /// <summary>A PNG's pixels as raw RGB bytes in planes (C × H × W, like the images), and its width and height.</summary>
    public static (byte[] Pixels, int Width, int Height) DecodeRgb(byte[] png)
    {
        using var image = Image.Load<Rgb24>(png);
        var plane = image.Width * image.Height;
        var pixels = new byte[3 * plane];
        image.ProcessPixelRows(rows =>
        {
            for (var y = 0; y < rows.Height; y++)
            {
                var row = rows.GetRowSpan(y);
                for (var x = 0; x < row.Length; x++)
                {
                    var i = y * rows.Width + x;
                    (pixels[i], pixels[plane + i], pixels[2 * plane + i]) = (row[x].R, row[x].G, row[x].B);
                }
            }
        });
        return (pixels, image.Width, image.Height);
    }

    /// <summary>Grey images (C = 1) as a grey PNG, colour ones (C = 3) as an RGB PNG; other channel counts are refused.</summary>
    private static Image Render(byte[] pixels, int count, int channels, int height, int width, int columns, int padding, int scale)
    {
        if (count == 0) throw new ConfigException("count", "no images to write");
        if (channels is not (1 or 3)) throw new ConfigException("channels", $"{channels} channels cannot be written as PNG (1 grey or 3 RGB)");
        if (pixels.Length < (long)count * channels * height * width)
            throw new ConfigException("pixels", $"{pixels.Length} bytes are fewer than {count} images of {channels}x{height}x{width}");
        columns = columns > 0 ? columns : (int)Math.Ceiling(Math.Sqrt(count));
        var rows = (count + columns - 1) / columns;
        var gridWidth = columns * (width + padding) + padding;
        var gridHeight = rows * (height + padding) + padding;
        Image grid = channels == 1
            ? new Image<L8>(gridWidth, gridHeight, new L8(255))
            : new Image<Rgb24>(gridWidth, gridHeight, new Rgb24(255, 255, 255));
        var plane = height * width;
        for (var i = 0; i < count; i++)
        {
            var ox = padding + i % columns * (width + padding);
            var oy = padding + i / columns * (height + padding);
            for (var y = 0; y < height; y++)
            for (var x = 0; x < width; x++)
            {
                var offset = i * channels * plane + y * width + x;
                if (grid is Image<L8> grey) grey[ox + x, oy + y] = new L8(pixels[offset]);
                else ((Image<Rgb24>)grid)[ox + x, oy + y] = new Rgb24(pixels[offset], pixels[offset + plane], pixels[offset + 2 * plane]);
            }
        }
        if (scale > 1) grid.Mutate(g => g.Resize(grid.Width * scale, grid.Height * scale, KnownResamplers.NearestNeighbor));
        return grid;
    }
}
