using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using Islands.Diffusion;
using Islands.Diffusion.IO;

namespace Islands.Hosting;

public sealed partial class PublicationMirror
{
    /// <summary>Fetches one file into the incoming directory unless it is there and verifies; returns bytes received and bytes kept from an earlier
    /// try.</summary>
    private async Task<(long Fetched, long Resumed)> FetchFileAsync(HttpClient http, Uri endpoint, string checkpoint, string file, string sha,
        string incoming, CancellationToken cancel)
    {
        var done = Path.Combine(incoming, file);
        if (File.Exists(done) && AtomicFile.Sha256(done) == sha) return (0, 0);
        var partial = done + ".partial";
        var offset = File.Exists(partial) ? new FileInfo(partial).Length : 0;
        if (offset > 0 && AtomicFile.Sha256(partial) == sha)
        {
            File.Move(partial, done, overwrite: true);
            return (0, offset);
        }
        var url = new Uri(endpoint, $"{PublicationEndpoints.Path.TrimStart('/')}/checkpoints/{Uri.EscapeDataString(checkpoint)}/" +
            $"{Uri.EscapeDataString(file)}");
        using var request = Request(url, offset);
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel);
        if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable)
        {
            // The partial file is longer than the island's: it is not a prefix of this file.
            File.Delete(partial);
            throw new IslandsException($"{url}: the interrupted transfer kept more bytes than the file has; discarded, fetching it again next round");
        }
        await ThrowUnlessSuccess(url, response, cancel);
        var append = offset > 0 && response.StatusCode == HttpStatusCode.PartialContent && response.Content.Headers.ContentRange?.From == offset;
        long received = 0;
        await using (var output = new FileStream(partial, append ? FileMode.Append : FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
        {
            await using var input = await response.Content.ReadAsStreamAsync(cancel);
            var buffer = new byte[1 << 16];
            // A body that stops arriving ends this try (what arrived is kept for the next one).
            using var stalled = CancellationTokenSource.CreateLinkedTokenSource(cancel);
            int read;
            while (true)
            {
                stalled.CancelAfter(StallTimeout);
                try
                {
                    read = await input.ReadAsync(buffer, stalled.Token);
                }
                catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
                {
                    await output.FlushAsync(CancellationToken.None);
                    throw new IslandsException($"{url}: no data for {StallTimeout.TotalSeconds:0} s after {received} bytes; resuming next round");
                }
                if (read == 0) break;
                received += read;
                if ((append ? offset : 0) + received > sources.MaxFileBytes)
                {
                    output.Close();
                    File.Delete(partial);
                    throw new IslandsException($"{url}: larger than islands:serving:sources:maxFileSize ({sources.MaxFileBytes} bytes); refused");
                }
                await output.WriteAsync(buffer.AsMemory(0, read), cancel);
            }
            output.Flush(flushToDisk: true);
        }
        var actual = AtomicFile.Sha256(partial);
        if (actual != sha)
        {
            File.Delete(partial);
            throw new IslandsException($"{url}: SHA-256 {actual[..12]}… does not match the publication's {sha[..12]}…; discarded, fetching it " +
                "again next round");
        }
        File.Move(partial, done, overwrite: true);
        return (received, append ? offset : 0);
    }

    /// <summary>The run's config.json (the model's shape), written atomically once it matches the publication's hash.</summary>
    private async Task FetchConfigAsync(HttpClient http, Uri endpoint, string sha, string runDirectory, CancellationToken cancel)
    {
        var path = Path.Combine(runDirectory, Diffusion.Training.RunDirectory.ConfigFile);
        if (File.Exists(path) && AtomicFile.Sha256(path) == sha) return;
        var url = new Uri(endpoint, PublicationEndpoints.Path.TrimStart('/') + "/" + Diffusion.Training.RunDirectory.ConfigFile);
        using var request = Request(url, offset: 0);
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel);
        await ThrowUnlessSuccess(url, response, cancel);
        if (response.Content.Headers.ContentLength > MaxPublicationBytes)
            throw new IslandsException($"{url}: a run config of {response.Content.Headers.ContentLength} bytes is not plausible");
        var bytes = await response.Content.ReadAsByteArrayAsync(cancel);
        var actual = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes));
        if (actual != sha)
            throw new IslandsException($"{url}: SHA-256 {actual[..12]}… does not match the publication's configSha256 {sha[..12]}…; refused");
        AtomicFile.WriteAllBytes(path, bytes);
    }

    private HttpRequestMessage Request(Uri url, long offset)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, url);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", sources.Key);
        if (offset > 0) request.Headers.Range = new RangeHeaderValue(offset, null);
        return request;
    }

    private static async Task ThrowUnlessSuccess(Uri url, HttpResponseMessage response, CancellationToken cancel)
    {
        if (response.IsSuccessStatusCode) return;
        var detail = "";
        try
        {
            using var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cancel));
            if (problem.RootElement.TryGetProperty("detail", out var d)) detail = ": " + d.GetString();
        }
        catch (JsonException)
        {
        }
        var hint = response.StatusCode == HttpStatusCode.Unauthorized
            ? " (islands:serving:sources:key must be one of the island's islands:publication:keys)" : "";
        throw new IslandsException($"{url}: {(int)response.StatusCode} {response.ReasonPhrase}{detail}{hint}");
    }
}
