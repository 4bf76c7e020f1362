import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import WALECodec
import WALECore
import WALEEngine
import WALEStorage


/// WAL-E's global options; they may appear before or after the subcommand name.
struct GlobalOptions: ParsableArguments {
    @Option(name: [.customShort("k"), .customLong("aws-access-key-id")], help: "Public AWS access key (the secret comes only from AWS_SECRET_ACCESS_KEY).")
    var awsAccessKeyID: String?
    @Flag(name: .customLong("aws-instance-profile"), help: "Use the EC2 instance profile for credentials.")
    var awsInstanceProfile = false
    @Option(name: .customLong("gs-access-key-id"), help: "Accepted for WAL-E compatibility; unused.")
    var gsAccessKeyID: String?
    @Option(name: [.customShort("a"), .customLong("wabs-account-name")], help: "Azure storage account name.")
    var wabsAccountName: String?
    @Option(name: .customLong("s3-prefix"), help: "Storage prefix, e.g. s3://bucket/path (or WALE_S3_PREFIX).")
    var s3Prefix: String?
    @Option(name: .customLong("wabs-prefix"), help: "Storage prefix, e.g. wabs://container/path (or WALE_WABS_PREFIX).")
    var wabsPrefix: String?
    @Option(name: .customLong("gs-prefix"), help: "Storage prefix, e.g. gs://bucket/path (or WALE_GS_PREFIX).")
    var gsPrefix: String?
    @Option(name: .customLong("file-prefix"), help: "Storage prefix, e.g. file://localhost/var/backups/pg (or WALE_FILE_PREFIX).")
    var filePrefix: String?
    @Option(name: .customLong("gpg-key-id"), help: "The gpg key to encrypt new objects to, as WAL-E does (or WALE_GPG_KEY_ID); encrypted objects are decrypted on reading either way.")
    var gpgKeyID: String?
    @Flag(name: .customLong("terse"), help: "Only log warnings and errors.")
    var terse = false
    @Option(name: .customLong("compression"), help: "Codec for new objects: lzop (default, WAL-E compatible), zstd or lz4 (or WALE_COMPRESSION).")
    var compression: String?

    var flags: GlobalFlags {
        var f = GlobalFlags(
            filePrefix: filePrefix, gsPrefix: gsPrefix, s3Prefix: s3Prefix, wabsPrefix: wabsPrefix, gpgKeyID: gpgKeyID,
            terse: terse, compression: compression)
        f.awsAccessKeyID = awsAccessKeyID
        f.awsInstanceProfile = awsInstanceProfile
        f.wabsAccountName = wabsAccountName
        return f
    }
}

/// `--progress` / `--no-progress` of the long commands; by default the line is drawn when stderr
/// is a terminal and --terse is not given.
struct ProgressOptions: ParsableArguments {
    @Flag(inversion: .prefixedNo, help: "Show (or hide) the updating progress line on stderr; shown by default on a terminal without --terse.")
    var progress: Bool?

    func show(terse: Bool) -> Bool { progressShown(progress, terse: terse) }
}

func progressShown(_ flag: Bool?, terse: Bool) -> Bool { flag ?? (isatty(2) != 0 && !terse) }

protocol WALECommand: ParsableCommand {
    var global: GlobalOptions { get }
    func execute() async throws -> WALEExitCode
}

struct Root: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wal-e",
        abstract: "Continuous archiving of PostgreSQL WAL and base backups to object storage (a WAL-E 1.1 drop-in).",
        discussion: "Storage is chosen by a prefix URL (file://, s3://, wabs://, swift://, gs://) from the options or the "
            + "WALE_*_PREFIX environment variables. Secrets are read only from the environment.",
        subcommands: [
            Version.self, BackupPushCommand.self, BackupFetchCommand.self, BackupListCommand.self, BackupMarkCommand.self,
            WALPushCommand.self, WALPushAheadCommand.self, WALFetchCommand.self, WALPrefetchCommand.self, DeleteCommand.self, VerifyCommand.self,
            WALVerifyCommand.self, StatusCommand.self, CheckCommand.self, KeyCommand.self,
        ])
    @OptionGroup var global: GlobalOptions
}

struct Version: WALECommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the version and exit.")
    @OptionGroup var global: GlobalOptions
    func execute() async throws -> WALEExitCode {
        writeStdout(walEVersionString + "\n")
        return .success
    }
}

struct WALPushCommand: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "wal-push", abstract: "Archive a WAL file (archive_command = 'wal-e wal-push %p').",
        discussion: "Uploads WAL_SEGMENT to <prefix>/wal_005/<name>.lzo (or .zst/.lz4). With --pool-size N the oldest other "
            + "archive_status/*.ready segments are uploaded in parallel too, and PostgreSQL's own later call for each "
            + "succeeds at once. With WALE_ARCHIVE_ASYNC=on, a detached helper archives the .ready backlog instead and "
            + "each call returns once its own file is archived. An archived file is never overwritten: identical content "
            + "succeeds, different content fails with exit 3.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("p"), .customLong("pool-size")], help: "Uploads in flight at once.")
    var poolSize: Int = WALPushRun.defaultPoolSize
    @Argument(help: "Path of the WAL file (%p).")
    var walSegment: String

    func validate() throws {
        guard poolSize >= 1 else { throw ValidationError("--pool-size must be at least 1") }
    }

    var run: WALPushRun { WALPushRun(flags: global.flags, poolSize: poolSize, segment: walSegment) }
    func execute() async throws -> WALEExitCode { try await run.execute() }
}

/// One wal-push as plain values: from `WALPushCommand`, or from `HotCommand` (main.swift) for
/// the plain form archive_command runs, without ArgumentParser's start-up cost.
struct WALPushRun {
    static let defaultPoolSize = 8
    let flags: GlobalFlags
    var poolSize = defaultPoolSize
    let segment: String

    func execute() async throws -> WALEExitCode {
        let ctx = try Context.make(flags, loggerName: "wal_e.worker.upload")
        var push = WALPush(
            store: ctx.store, prefix: ctx.config.prefix, compression: ctx.compression, logger: ctx.logger, poolSize: poolSize,
            streams: ctx.config.prefix.scheme == .file ? WALPush.localStreams : nil)
        push.sealing = try ctx.sealing()
        var ahead: WALPush.Ahead?
        if ctx.config.archiveAsync {
            let args = helperArguments(ctx)
            ahead = WALPush.Ahead { spawnDetached(args) }
        }
        _ = try await push.run(path: segment, ahead: ahead)
        return .success
    }

    /// `wal-push-ahead` for the WAL directory of `segment`, with this call's settings (the
    /// environment, secrets included, is inherited, never put in argv).
    private func helperArguments(_ ctx: Context) -> [String] {
        var args = childArguments(flags, ctx)
        if let gpg = flags.gpgKeyID { args += ["--gpg-key-id", gpg] }
        if let codec = flags.compression { args += ["--compression", codec] }
        var dir = POSIX.dirname(segment)
        if !dir.hasPrefix("/") { dir = POSIX.currentDirectory() + "/" + dir }
        return args + ["wal-push-ahead", "--prefix", ctx.config.prefix.raw, dir]
    }
}

struct WALPushAheadCommand: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "wal-push-ahead", abstract: "Internal: archive a WAL directory's .ready backlog (WALE_ARCHIVE_ASYNC).",
        shouldDisplay: false)
    @OptionGroup var global: GlobalOptions
    @Option(help: "The storage prefix URL to write to.") var prefix: String
    @Argument(help: "The WAL directory (pg_wal).") var walDirectory: String

    func execute() async throws -> WALEExitCode {
        let ctx = try Context.make(global.childFlags(prefix: prefix), loggerName: "wal_e.worker.upload")
        var push = WALPush(
            store: ctx.store, prefix: ctx.config.prefix, compression: ctx.compression, logger: ctx.logger,
            poolSize: WALPushRun.defaultPoolSize, streams: ctx.config.prefix.scheme == .file ? WALPush.localStreams : nil)
        push.sealing = try ctx.sealing()
        await push.pushAhead(walDirectory: walDirectory)
        return .success
    }
}

struct WALFetchCommand: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "wal-fetch", abstract: "Restore a WAL file (restore_command = 'wal-e wal-fetch \"%f\" \"%p\"').",
        discussion: """
            Exit status: 0 when WAL_DESTINATION was written completely; 1 only when the store answered that the \
            file is not in the archive. Any other failure must not end PostgreSQL's archive recovery early, so it \
            exits above 125, which PostgreSQL treats as fatal: 129 configuration or credentials, 130 bad arguments \
            or an internal error, 193 the archived object is corrupt, 202 storage or local I/O kept failing (each \
            after bounded retries, WALE_RETRIES attempts). On a standby (standby.signal in the data directory, or \
            --recovery-mode standby) corrupt and failing storage exit 65 and 74 instead, so PostgreSQL keeps \
            retrying. Following segments are prefetched into <dir of WAL_DESTINATION>/.wal-e/prefetch/.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("p"), .customLong("prefetch")], help: "Segments to prefetch (0 disables).")
    var prefetch: Int = WALFetchRun.defaultPrefetch
    @Option(
        name: .customLong("recovery-mode"),
        help: "Auto (default: standby when the working directory, PostgreSQL's data directory, holds standby.signal), standby or archive-recovery.")
    var recoveryMode: String = WALFetchRun.defaultRecoveryMode
    @Argument(help: "Name of the WAL file (%f).")
    var walSegment: String
    @Argument(help: "Where to write it (%p).")
    var walDestination: String

    func validate() throws {
        guard prefetch >= 0 else { throw ValidationError("--prefetch must be 0 or more") }
        guard recoveryMode == "auto" || RestoreCommandStatus.Mode(rawValue: recoveryMode) != nil else {
            throw ValidationError("--recovery-mode must be auto, standby or archive-recovery")
        }
    }

    var run: WALFetchRun {
        WALFetchRun(flags: global.flags, prefetch: prefetch, recoveryMode: recoveryMode, segment: walSegment, destination: walDestination)
    }
    func execute() async throws -> WALEExitCode { try await run.execute() }
}

/// One wal-fetch as plain values: from `WALFetchCommand`, or from `HotCommand` (main.swift) for
/// the plain form restore_command runs, without ArgumentParser's start-up cost.
struct WALFetchRun {
    static let defaultPrefetch = 8
    static let defaultRecoveryMode = "auto"
    let flags: GlobalFlags
    var prefetch = defaultPrefetch
    var recoveryMode = defaultRecoveryMode
    let segment: String
    let destination: String

    /// The mode PostgreSQL runs restore_command in: it runs it in the data directory, which holds
    /// standby.signal on a standby (recovery.conf with standby_mode on before PostgreSQL 12).
    var mode: RestoreCommandStatus.Mode {
        if let m = RestoreCommandStatus.Mode(rawValue: recoveryMode) { return m }
        if POSIX.stat("standby.signal") != nil { return .standby }
        if let conf = POSIX.readSmallFile("recovery.conf") {
            for line in conf.split(separator: "\n") {
                let t = line.split(separator: "#", maxSplits: 1).first.map(String.init) ?? ""
                let kv = t.split(separator: "=", maxSplits: 1).map { String($0).trimmingWhitespace().filter { $0 != "'" && $0 != "\"" } }
                if kv.count == 2, kv[0] == "standby_mode", ["on", "true", "yes", "1"].contains(kv[1].lowercased()) { return .standby }
            }
        }
        return .archiveRecovery
    }

    /// Logs a failure and returns the status PostgreSQL must see (see RestoreCommandStatus).
    func report(failure error: any Error) -> Int32 {
        let e = error as? WALEError
        let mode = self.mode
        let status = RestoreCommandStatus.status(failure: e?.kind, mode: mode)
        if e?.kind == .notFound { return status }  // WALFetch logged it, as WAL-E does
        let logger = Context.bootstrapLogger(terse: false)
        if let e {
            logger.log(e.kind == .internal ? .critical : .error, e.message, detail: e.detail, hint: e.hint)
        } else {
            logger.log(.critical, "An unprocessed exception has avoided all error handling", detail: "\(error)")
        }
        if RestoreCommandStatus.isFatalForPostgres(status) {
            logger.error(
                "wal-fetch of \(segment) failed for a reason other than the file being absent: exiting \(status) so that PostgreSQL stops recovery instead of ending it here",
                detail: "mode \(mode.rawValue); PostgreSQL reads any status up to 125 as the end of the archive and would promote, dropping every later transaction",
                hint: "fix the cause above, then start the server again: recovery resumes where it stopped")
        } else {
            logger.warning(
                "wal-fetch of \(segment) failed on a standby: exiting \(status) so that PostgreSQL retries later",
                detail: "mode \(mode.rawValue)")
        }
        return status
    }

    func execute() async throws -> WALEExitCode {
        let ctx = try Context.make(flags, loggerName: "wal_e.operator.backup")
        let downloader = WALDownloader(store: ctx.store, prefix: ctx.config.prefix, preferred: ctx.compression)
        let childArgs = prefetcherArguments(ctx)
        let fetch = WALFetch(downloader: downloader, logger: ctx.logger, retry: ctx.retry, prefetch: prefetch) { base, segments in
            spawnDetached(childArgs + [base] + segments)
        }
        _ = try await fetch.run(name: segment, destination: destination)
        return .success
    }

    private func prefetcherArguments(_ ctx: Context) -> [String] {
        var args = childArguments(flags, ctx)
        args += ["wal-prefetch", "--prefix", ctx.config.prefix.raw, "--compression", ctx.compression.rawValue]
        args += ["--concurrency", String(min(max(prefetch, 1), 4))]
        return args
    }
}

struct WALPrefetchCommand: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "wal-prefetch", abstract: "Internal: download segments into a prefetch directory.",
        shouldDisplay: false)
    @OptionGroup var global: GlobalOptions
    @Option(help: "The storage prefix URL to read from.") var prefix: String
    @Option(help: "Download concurrency.") var concurrency: Int = 2
    @Argument(help: "The directory holding .wal-e/prefetch.") var baseDirectory: String
    @Argument(help: "Segment names.") var segments: [String]

    func execute() async throws -> WALEExitCode {
        let ctx = try Context.make(global.childFlags(prefix: prefix), loggerName: "wal_e.worker.prefetch")
        let downloader = WALDownloader(store: ctx.store, prefix: ctx.config.prefix, preferred: ctx.compression)
        await WALPrefetch(downloader: downloader, logger: ctx.logger, concurrency: concurrency).run(base: baseDirectory, segments: segments)
        return .success
    }
}
