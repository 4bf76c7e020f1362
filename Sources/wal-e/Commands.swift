import ArgumentParser
import WALECodec
import WALECore
import WALEEngine
import WALEStorage


/// WAL-E's global options; they may appear before or after the subcommand name.
struct GlobalOptions: ParsableArguments {
    @Option(name: [.customShort("k"), .customLong("aws-access-key-id")], help: "public AWS access key (the secret comes only from AWS_SECRET_ACCESS_KEY)")
    var awsAccessKeyID: String?
    @Flag(name: .customLong("aws-instance-profile"), help: "use the EC2 instance profile for credentials")
    var awsInstanceProfile = false
    @Option(name: .customLong("gs-access-key-id"), help: "accepted for WAL-E compatibility; unused")
    var gsAccessKeyID: String?
    @Option(name: [.customShort("a"), .customLong("wabs-account-name")], help: "Azure storage account name")
    var wabsAccountName: String?
    @Option(name: .customLong("s3-prefix"), help: "storage prefix, e.g. s3://bucket/path (or WALE_S3_PREFIX)")
    var s3Prefix: String?
    @Option(name: .customLong("wabs-prefix"), help: "storage prefix, e.g. wabs://container/path (or WALE_WABS_PREFIX)")
    var wabsPrefix: String?
    @Option(name: .customLong("gs-prefix"), help: "storage prefix, e.g. gs://bucket/path (or WALE_GS_PREFIX)")
    var gsPrefix: String?
    @Option(name: .customLong("file-prefix"), help: "storage prefix, e.g. file://localhost/var/backups/pg (or WALE_FILE_PREFIX)")
    var filePrefix: String?
    @Option(name: .customLong("gpg-key-id"), help: "gpg key to encrypt new objects to, as WAL-E does (or WALE_GPG_KEY_ID); encrypted objects are decrypted on reading either way")
    var gpgKeyID: String?
    @Flag(name: .customLong("terse"), help: "only log warnings and errors")
    var terse = false
    @Option(name: .customLong("compression"), help: "codec for new objects: lzop (default, WAL-E compatible), zstd or lz4 (or WALE_COMPRESSION)")
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
            WALPushCommand.self, WALFetchCommand.self, WALPrefetchCommand.self, DeleteCommand.self,
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
            + "archive_status/*.ready segments are uploaded in parallel too and marked .done once durable. An archived "
            + "file is never overwritten: identical content succeeds, different content fails with exit 3.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("p"), .customLong("pool-size")], help: "uploads in flight at once")
    var poolSize: Int = 8
    @Argument(help: "path of the WAL file (%p)")
    var walSegment: String

    func validate() throws {
        guard poolSize >= 1 else { throw ValidationError("--pool-size must be at least 1") }
    }

    func execute() async throws -> WALEExitCode {
        let ctx = try Context.make(global.flags, loggerName: "wal_e.worker.upload")
        var push = WALPush(
            store: ctx.store, prefix: ctx.config.prefix, compression: ctx.compression, logger: ctx.logger, poolSize: poolSize,
            streams: ctx.config.prefix.scheme == .file ? WALPush.localStreams : nil)
        push.gpgKeyID = try ctx.checkedGPGKey()
        _ = try await push.run(path: walSegment)
        return .success
    }
}

struct WALFetchCommand: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "wal-fetch", abstract: "Restore a WAL file (restore_command = 'wal-e wal-fetch \"%f\" \"%p\"').",
        discussion: """
            Exit status: 0 when WAL_DESTINATION was written completely; 1 when the file is not in the archive; \
            65 when the archived object is corrupt and 74 when storage or local I/O keeps failing, each after \
            bounded retries (WALE_RETRIES attempts, default 5). Following segments are prefetched into \
            <dir of WAL_DESTINATION>/.wal-e/prefetch/.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("p"), .customLong("prefetch")], help: "segments to prefetch (0 disables)")
    var prefetch: Int = 8
    @Argument(help: "name of the WAL file (%f)")
    var walSegment: String
    @Argument(help: "where to write it (%p)")
    var walDestination: String

    func validate() throws {
        guard prefetch >= 0 else { throw ValidationError("--prefetch must be 0 or more") }
    }

    func execute() async throws -> WALEExitCode {
        let ctx = try Context.make(global.flags, loggerName: "wal_e.operator.backup")
        let downloader = WALDownloader(store: ctx.store, prefix: ctx.config.prefix, preferred: ctx.compression)
        let childArgs = prefetcherArguments(ctx)
        let fetch = WALFetch(downloader: downloader, logger: ctx.logger, retry: ctx.retry, prefetch: prefetch) { base, segments in
            spawnDetached(childArgs + [base] + segments)
        }
        _ = try await fetch.run(name: walSegment, destination: walDestination)
        return .success
    }

    private func prefetcherArguments(_ ctx: Context) -> [String] {
        var args: [String] = []
        if global.terse { args.append("--terse") }
        if let k = global.awsAccessKeyID { args += ["--aws-access-key-id", k] }
        if global.awsInstanceProfile { args.append("--aws-instance-profile") }
        if let a = global.wabsAccountName { args += ["--wabs-account-name", a] }
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
    @Option(help: "the storage prefix URL to read from") var prefix: String
    @Option(help: "download concurrency") var concurrency: Int = 2
    @Argument(help: "the directory holding .wal-e/prefetch") var baseDirectory: String
    @Argument(help: "segment names") var segments: [String]

    func execute() async throws -> WALEExitCode {
        // Only the prefix handed over by wal-fetch: the scheme of a --file-prefix value picks the backend.
        var only = GlobalFlags(filePrefix: prefix, terse: global.terse, compression: global.compression)
        only.awsAccessKeyID = global.awsAccessKeyID
        only.awsInstanceProfile = global.awsInstanceProfile
        only.wabsAccountName = global.wabsAccountName
        let ctx = try Context.make(only, loggerName: "wal_e.worker.prefetch")
        let downloader = WALDownloader(store: ctx.store, prefix: ctx.config.prefix, preferred: ctx.compression)
        await WALPrefetch(downloader: downloader, logger: ctx.logger, concurrency: concurrency).run(base: baseDirectory, segments: segments)
        return .success
    }
}
