using System.Diagnostics;
using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Cluster;
using Akka.Coordination;
using Akka.Event;
using Akka.Hosting;
using Akka.Hosting.Coordination;
using Npgsql;

namespace Islands.Hosting;

/// <summary>Who holds an island's lease, as its journal database says (null owner: nobody).</summary>
public sealed record LeaseHolder(string Name, string? Owner, DateTimeOffset? ExpiresUtc, long Epoch);

/// <summary>
/// An Akka.Coordination lease kept in the island's own PostgreSQL journal database: one row per lease with its owner,
/// its expiry (on the database's clock, so nodes' clocks do not matter) and an epoch that grows with every change of
/// owner. The island's training singleton runs only while its node holds the lease, so even when the island's cluster
/// splits in two (a partition, a pause longer than the split-brain resolver's stable-after) the second singleton waits
/// instead of training beside the first. The owner is the node's address plus its incarnation's uid: a node restarted at
/// the same address is a new owner and waits for the old incarnation's lease to expire. A holder that cannot renew
/// within the time to live is told that it lost the lease, and the singleton manager stops its singleton.
/// </summary>
public sealed class JournalLease : Lease
{
    public const string ConfigPath = "islands.journal-lease";
    /// <summary>The split-brain resolver's lease (lease-majority), with a shorter time to live than the trainer's.</summary>
    public const string SplitBrainConfigPath = "islands.split-brain-lease";
    private readonly string connectionString;
    private readonly bool waitForExpiry;
    private readonly string owner;
    private readonly TimeSpan ttl;
    private readonly ILoggingAdapter log;
    private readonly Stopwatch sinceRenewal = new();
    private readonly Lock gate = new();
    private Timer? heartbeat;
    private Action<Exception?>? onLost;
    private volatile bool held;

    public JournalLease(LeaseSettings settings, ExtendedActorSystem system) : base(settings)
    {
        connectionString = settings.LeaseConfig.GetString("connection-string");
        waitForExpiry = settings.LeaseConfig.GetBoolean("acquire-waits-for-expiry", false);
        // The full address and the incarnation: Akka names the owner by host and port only, which a restarted node shares.
        owner = $"{Cluster.Get(system).SelfAddress}#{Cluster.Get(system).SelfUniqueAddress.Uid}";
        ttl = settings.TimeoutSettings.HeartbeatTimeout;
        log = Logging.GetLogger(system, typeof(JournalLease));
        // An actor system that dies without releasing (aborted, or its process killed) must stop renewing, or its lease never expires.
        system.WhenTerminated.ContinueWith(_ => StopHeartbeat(), TaskScheduler.Default);
    }

    public override Task<bool> Acquire() => Acquire(null!);

    public override async Task<bool> Acquire(Action<Exception> leaseLostCallback)
    {
        // The split-brain resolver asks once, when it decides. A holder that died shortly before (it acquired the lease at
        // an earlier decision) stops renewing, so its lease is free within the time to live: waiting that long lets the
        // survivors of a second failure win, where a single try would make them down themselves.
        var giveUp = Stopwatch.StartNew();
        while (true)
        {
            if (await TryAcquire(leaseLostCallback)) return true;
            if (!waitForExpiry || giveUp.Elapsed > ttl + TimeSpan.FromSeconds(1)) return false;
            await Task.Delay(TimeSpan.FromMilliseconds(250));
        }
    }

    private async Task<bool> TryAcquire(Action<Exception> leaseLostCallback)
    {
        await using var connection = await OpenAsync(connectionString);
        await using var command = new NpgsqlCommand("""
            INSERT INTO islands_lease (name, owner, expires_at, epoch) VALUES (@name, @owner, now() + @ttl, 1)
            ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at,
                epoch = islands_lease.epoch + CASE WHEN islands_lease.owner = EXCLUDED.owner THEN 0 ELSE 1 END
            WHERE islands_lease.owner = EXCLUDED.owner OR islands_lease.expires_at < now()
            RETURNING epoch
            """, connection);
        AddKey(command);
        command.Parameters.AddWithValue("ttl", ttl);
        var epoch = await command.ExecuteScalarAsync();
        if (epoch is null) return false;
        lock (gate)
        {
            held = true;
            sinceRenewal.Restart();
            onLost = leaseLostCallback is null ? null : e => leaseLostCallback(e!);
            heartbeat ??= new Timer(_ => _ = RenewAsync(), null, Settings.TimeoutSettings.HeartbeatInterval,
                Settings.TimeoutSettings.HeartbeatInterval);
        }
        log.Info("lease {0} acquired by {1} (epoch {2})", Settings.LeaseName, owner, epoch);
        return true;
    }

    public override async Task<bool> Release()
    {
        StopHeartbeat();
        await using var connection = await OpenAsync(connectionString);
        await using var command = new NpgsqlCommand("DELETE FROM islands_lease WHERE name = @name AND owner = @owner", connection);
        AddKey(command);
        await command.ExecuteNonQueryAsync();
        log.Info("lease {0} released by {1}", Settings.LeaseName, owner);
        return true;
    }

    /// <summary>Held and renewed within the time to live (as this process measures it), so no other owner can have it yet.</summary>
    public override bool CheckLease() => held && sinceRenewal.Elapsed < ttl;

    private async Task RenewAsync()
    {
        if (!held) return;
        Exception? failure = null;
        try
        {
            await using var connection = await OpenAsync(connectionString);
            await using var command = new NpgsqlCommand("UPDATE islands_lease SET expires_at = now() + @ttl WHERE name = @name AND owner = @owner " +
                "AND expires_at >= now()", connection);
            AddKey(command);
            command.Parameters.AddWithValue("ttl", ttl);
            if (await command.ExecuteNonQueryAsync() == 1)
            {
                sinceRenewal.Restart();
                return;
            }
            failure = new LeaseException($"lease {Settings.LeaseName} expired or was taken by another owner");
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException)
        {
            // The database may come back before the time to live runs out: keep the lease until then.
            if (sinceRenewal.Elapsed < ttl) return;
            failure = new LeaseException($"lease {Settings.LeaseName} could not be renewed within {ttl.TotalSeconds:0} s: {e.Message}", e);
        }
        log.Warning("{0}; the singleton stops", failure.Message);
        StopHeartbeat();
        onLost?.Invoke(failure);
    }

    private void StopHeartbeat()
    {
        lock (gate)
        {
            held = false;
            heartbeat?.Dispose();
            heartbeat = null;
        }
    }

    private void AddKey(NpgsqlCommand command)
    {
        command.Parameters.AddWithValue("name", Settings.LeaseName);
        command.Parameters.AddWithValue("owner", owner);
    }

    /// <summary>Databases whose lease table this process has already created (renewals and /status run often).</summary>
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> Created = new();

    private static async Task<NpgsqlConnection> OpenAsync(string connectionString)
    {
        var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        if (Created.ContainsKey(connectionString)) return connection;
        await using var create = new NpgsqlCommand(
            "CREATE TABLE IF NOT EXISTS islands_lease (name text PRIMARY KEY, owner text NOT NULL, expires_at timestamptz NOT NULL, epoch bigint " +
            "NOT NULL)", connection);
        await create.ExecuteNonQueryAsync();
        Created[connectionString] = true;
        return connection;
    }

    /// <summary>Every lease in the database and its holder (for /status and tests); an expired lease has no owner.</summary>
    public static async Task<IReadOnlyList<LeaseHolder>> HoldersAsync(string connectionString, CancellationToken cancel = default)
    {
        await using var connection = await OpenAsync(connectionString);
        await using var command = new NpgsqlCommand(
            "SELECT name, CASE WHEN expires_at >= now() THEN owner END, CASE WHEN expires_at >= now() THEN expires_at END, epoch FROM " +
            "islands_lease ORDER BY name", connection);
        await using var reader = await command.ExecuteReaderAsync(cancel);
        var holders = new List<LeaseHolder>();
        while (await reader.ReadAsync(cancel))
            holders.Add(new LeaseHolder(reader.GetString(0), reader.IsDBNull(1) ? null : reader.GetString(1),
                reader.IsDBNull(2) ? null : reader.GetFieldValue<DateTimeOffset>(2), reader.GetInt64(3)));
        return holders;
    }
}

/// <summary>
/// Akka.Hosting option that points a singleton (or, at <see cref="JournalLease.SplitBrainConfigPath"/>, the split-brain
/// resolver) at <see cref="JournalLease"/> in a PostgreSQL database.
/// </summary>
public sealed class JournalLeaseOption(string connectionString, TimeSpan timeToLive, string configPath = JournalLease.ConfigPath,
    bool acquireWaitsForExpiry = false)
    : LeaseOptionBase
{
    public override string ConfigPath => configPath;
    public override Type Class => typeof(JournalLease);

    public override void Apply(AkkaConfigurationBuilder builder, Setup? setup = null)
    {
        var interval = TimeSpan.FromTicks(Math.Max(TimeSpan.FromMilliseconds(500).Ticks, timeToLive.Ticks / 5));
        builder.AddHocon($$"""
            {{ConfigPath}} {
              lease-class = {{System.Text.Json.JsonSerializer.Serialize(Class.AssemblyQualifiedName!)}}
              heartbeat-timeout = {{(long)timeToLive.TotalMilliseconds}}ms
              heartbeat-interval = {{(long)interval.TotalMilliseconds}}ms
              lease-operation-timeout = 5s
              connection-string = {{System.Text.Json.JsonSerializer.Serialize(connectionString)}}
              acquire-waits-for-expiry = {{(acquireWaitsForExpiry ? "on" : "off")}}
            }
            """, HoconAddMode.Prepend);
        builder.AddHocon(LeaseProvider.DefaultConfig(), HoconAddMode.Append);
    }
}
