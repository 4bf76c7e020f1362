import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import WALECodec
import WALECore
import WALEEngine
import WALEStorage

struct BackupPushCommand: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "backup-push", abstract: "Take a base backup of a running (or, with --while-offline, stopped) cluster.",
        discussion: """
            Non-exclusive backup over one PostgreSQL session (libpq environment: PGHOST, PGPORT, PGUSER, PGPASSWORD, \
            PGDATABASE, ~/.pgpass). Writes <prefix>/basebackups_005/base_<segment>_<offset>/ with WAL-E's tar partitions \
            and, last, the sentinel; prints the backup's name on stdout. --incremental stores only what changed since the \
            newest backup of the cluster (--from NAME picks another): changed blocks found by WAL summaries on PostgreSQL \
            17+ (summarize_wal = on), changed files (size, modification time) on 15 and 16, as \
            basebackups_005/incr_<segment>_<offset>/, which WAL-E 1.1 does not see. When that is not possible it says why \
            and takes a full backup (--require-incremental fails instead). See docs/incremental.md.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("p"), .customLong("pool-size")], help: "Partitions uploaded in parallel.")
    var poolSize: Int = 4
    @Option(name: .customLong("cluster-read-rate-limit"), help: "Limit on reading the cluster, bytes per second in total.")
    var clusterReadRateLimit: Int64?
    @Flag(name: .customLong("while-offline"), help: "Back up a stopped cluster (named from pg_control).")
    var whileOffline = false
    @Flag(name: .customLong("fast"), help: "Ask for an immediate checkpoint instead of a spread one.")
    var fast = false
    @Flag(name: .customLong("permanent"), help: "Mark the backup permanent (kept by every retention rule).")
    var permanent = false
    @Option(name: .customLong("partition-size"), help: "Cut tar partitions at this many bytes of data (default 128 MiB; at most WAL-E's 1.5 GiB).")
    var partitionSize: Int64 = 128 << 20
    @Option(name: .customLong("archive-timeout"), help: "Seconds to wait for the backup's last WAL file to reach the archive.")
    var archiveTimeout: Double = 300
    @Flag(name: .customLong("incremental"), help: "Store only what changed since the parent backup (a full one when that is not possible).")
    var incremental = false
    @Flag(name: .customLong("require-incremental"), help: "As --incremental, but fail instead of taking a full backup.")
    var requireIncremental = false
    @Flag(name: .customLong("full"), help: "Take a full backup (the default; overrides --incremental).")
    var full = false
    @Option(name: .customLong("from"), help: "The parent of an incremental backup (default: the newest backup of this cluster).")
    var from: String?
    @Option(name: .customLong("max-chain"), help: "Incremental backups over one full one before a full one is taken (default 6).")
    var maxChain: Int = 6
    @OptionGroup var progressOptions: ProgressOptions
    @Argument(help: "The data directory.") var pgClusterDirectory: String

    func validate() throws {
        guard maxChain >= 1 else { throw ValidationError("--max-chain must be at least 1") }
        if from != nil && !(incremental || requireIncremental) { throw ValidationError("--from names the parent of an incremental backup: add --incremental") }
        guard poolSize >= 1 else { throw ValidationError("--pool-size must be at least 1") }
        if let r = clusterReadRateLimit, r < 1 { throw ValidationError("--cluster-read-rate-limit must be positive") }
        guard partitionSize >= 1 << 20 && partitionSize <= 1_610_612_736 else {
            throw ValidationError("--partition-size must be between 1 MiB and 1610612736 bytes (WAL-E's limit)")
        }
    }

    func execute() async throws -> WALEExitCode {
        let ctx = try Context.make(global.flags, loggerName: "wal_e.operator.backup")
        var o = BackupPush.Options()
        o.poolSize = poolSize
        o.rateLimit = clusterReadRateLimit
        o.whileOffline = whileOffline
        o.fast = fast
        o.permanent = permanent
        o.partitionBytes = partitionSize
        o.archiveTimeout = archiveTimeout
        o.incremental = full ? .off : requireIncremental ? .required : incremental ? .preferred : .off
        o.incrementalFrom = from
        o.maxChain = maxChain
        o.showProgress = progressOptions.show(terse: ctx.config.terse)
        let env = Context.environment()
        o.manifestChecksum = try ManifestChecksum.from(env: env)
        var push = BackupPush(store: ctx.store, prefix: ctx.config.prefix, compression: ctx.compression, logger: ctx.logger, env: env)
        push.sealing = try ctx.sealing()
        await AbandonedUploads.sweep(store: ctx.store, prefix: ctx.config.prefix, age: try AbandonedUploads.age(env: env), logger: ctx.logger)
        let name = try await push.run(clusterDirectory: pgClusterDirectory, options: o)
        writeStdout(name.description + "\n")
        return .success
    }
}

struct BackupFetchCommand: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "backup-fetch", abstract: "Restore a base backup into a directory.",
        discussion: """
            BACKUP_NAME is a name from backup-list or LATEST. Tablespaces: pre-create pg_tblspc/<oid> links, or use \
            --restore-spec FILE|SOURCE, or --blind-restore. --prepare-recovery (implied by any --recovery-target-*) \
            writes recovery.signal and a restore_command using wal-fetch into postgresql.auto.conf. --delta rebuilds \
            an existing, stopped data directory (a standby or failed primary): files whose size, mode and checksum \
            match the backup's manifest stay, others are rewritten, and what the backup lacks is removed (pg_wal \
            emptied), except postgresql.conf, pg_hba.conf, pg_ident.conf, signal files and pg_log/ and log/; a \
            partition with nothing to rewrite is not downloaded. --delta-trust-mtime compares size, mode and \
            modification time instead of reading files (pgBackRest's --delta --force), for files last modified at least \
            50 ms before the backup started.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("p"), .customLong("pool-size")], help: "Partitions restored in parallel.")
    var poolSize: Int = 4
    @Flag(name: .customLong("blind-restore"), help: "Do not require tablespace links; restore tablespaces into pg_tblspc.")
    var blindRestore = false
    @Option(name: .customLong("restore-spec"), help: "Tablespace restore spec: a JSON file, or SOURCE for the original locations.")
    var restoreSpec: String?
    @Flag(
        name: .customLong("delta"),
        help: "Rebuild an existing, stopped data directory: keep the files that match the backup's manifest, rewrite the others, remove what the backup lacks.")
    var delta = false
    @Flag(
        name: .customLong("delta-trust-mtime"),
        help: "With --delta: a file with the backup's size, mode and modification time is kept without being read.")
    var deltaTrustMtime = false
    @Flag(name: .customLong("prepare-recovery"), help: "Write recovery.signal and restore_command.")
    var prepareRecovery = false
    @Option(name: .customLong("restore-command"), help: "Restore_command to write (default: this wal-e with the current prefix).")
    var restoreCommand: String?
    @Option(name: .customLong("recovery-target-time"), help: "Recover up to this time (PostgreSQL's recovery_target_time).")
    var recoveryTargetTime: String?
    @Option(name: .customLong("recovery-target-lsn"), help: "Recover up to this WAL position (recovery_target_lsn).")
    var recoveryTargetLSN: String?
    @Option(name: .customLong("recovery-target-name"), help: "Recover up to this restore point (recovery_target_name).")
    var recoveryTargetName: String?
    @Option(name: .customLong("recovery-target-action"), help: "Pause (PostgreSQL's default), promote or shutdown.")
    var recoveryTargetAction: String?
    @OptionGroup var progressOptions: ProgressOptions
    @Argument(help: "The directory to restore into.") var pgClusterDirectory: String
    @Argument(help: "A backup name or LATEST.") var backupName: String

    func execute() async throws -> WALEExitCode {
        let ctx = try Context.make(global.flags, loggerName: "wal_e.operator.backup")
        var o = BackupFetch.Options()
        o.poolSize = max(1, poolSize)
        o.blindRestore = blindRestore
        o.restoreSpec = restoreSpec
        o.delta = delta || deltaTrustMtime
        o.deltaTrustMtime = deltaTrustMtime
        o.restoreWrites = try RestoreWrites.from(env: Context.environment())
        o.showProgress = progressOptions.show(terse: ctx.config.terse)
        if prepareRecovery || recoveryTargetTime != nil || recoveryTargetLSN != nil || recoveryTargetName != nil || restoreCommand != nil {
            let exe = executablePath()
            let p = ctx.config.prefix
            // There is no --swift-prefix option (as in WAL-E): pass that one through the environment.
            let defaultCommand = p.scheme == .swift
                ? "env WALE_SWIFT_PREFIX=\(p.raw) \(exe) wal-fetch \"%f\" \"%p\""
                : "\(exe) --\(p.scheme.rawValue)-prefix \(p.raw) wal-fetch \"%f\" \"%p\""
            var r = BackupFetch.RecoverySettings(restoreCommand: restoreCommand ?? defaultCommand)
            r.targetTime = recoveryTargetTime
            r.targetLSN = recoveryTargetLSN
            r.targetName = recoveryTargetName
            r.targetAction = recoveryTargetAction
            o.recovery = r
        }
        let fetch = BackupFetch(store: ctx.store, prefix: ctx.config.prefix, logger: ctx.logger, retry: ctx.retry)
        _ = try await fetch.run(clusterDirectory: pgClusterDirectory, query: backupName, options: o)
        return .success
    }
}

struct BackupListCommand: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "backup-list", abstract: "List base backups (tab-separated, as WAL-E prints them).",
        discussion: "QUERY is LATEST or a backup name. --detail reads each sentinel to fill the size and stop columns.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .customLong("detail"), help: "Fill expanded_size_bytes and the stop position from each sentinel.")
    var detail = false
    @Flag(name: .customLong("json"), help: "Print a JSON array (with every sentinel field) instead.")
    var json = false
    @Argument(help: "LATEST or a backup name.") var query: String?

    func execute() async throws -> WALEExitCode {
        let ctx = try Context.make(global.flags, loggerName: "wal_e.operator.backup")
        let catalog = BackupCatalog(store: ctx.store, prefix: ctx.config.prefix)
        if !json { writeStdout(BackupListFormat.header()) }
        var backups = try await catalog.list()
        // WAL-E: a query that matches nothing prints the header alone and succeeds.
        if let query { backups = try catalog.find(query, in: backups).map { [$0] } ?? [] }
        if detail || json {
            for i in backups.indices { backups[i].sentinel = try await catalog.loadSentinel(backups[i]) }
        }
        if json {
            writeStdout(BackupListFormat.json(backups))
        } else {
            writeStdout(backups.map { BackupListFormat.row($0, detail: detail) }.joined())
        }
        return .success
    }
}

func executablePath() -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    guard n > 0 else { return "wal-e" }
    return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
