#if canImport(Glibc)
import Glibc
#endif
import WALECodec
import WALECore
import WALEEngine
import WALEStorage

/// Everything a command needs, resolved once from flags and the environment.
struct Context {
    let config: Configuration
    let logger: Logger
    let store: any ObjectStore
    let compression: Compression
    let retry: RetryPolicy

    static func environment() -> [String: String] {
        var env: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { env[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return env
    }

    /// A logger for errors raised before the configuration is known (stderr only).
    static func bootstrapLogger(terse: Bool) -> Logger {
        Logger(name: "wal_e.main", minimumLevel: terse ? .warning : .info, sink: LogSink.make([.stderr], facility: LOG_USER))
    }

    static func make(_ flags: GlobalFlags, loggerName: String, awsAccessKeyID: String? = nil) throws -> Context {
        let env = environment()
        let config = try Configuration.resolve(flags, env: env)
        let sink = LogSink.make(config.logDestinations, facility: config.syslogFacility)
        let logger = Logger(name: loggerName, minimumLevel: config.terse ? .warning : .info, sink: sink)
        for w in config.warnings { logger.warning(w) }
        return Context(
            config: config, logger: logger,
            store: try makeStore(
                config, env: env, logger: logger, awsAccessKeyID: awsAccessKeyID ?? flags.awsAccessKeyID, wabsAccount: flags.wabsAccountName),
            compression: Compression(name: config.compressionName)!,
            retry: RetryPolicy(attempts: config.retryAttempts, baseDelay: 0.25, maxDelay: 8))
    }

    /// The gpg key new objects are encrypted to, once gpg has shown it can encrypt to it (before
    /// anything is written); nil without WALE_GPG_KEY_ID.
    func checkedGPGKey() throws -> String? {
        guard let key = config.gpgKeyID else { return nil }
        try GPG.checkEncryptionKey(key)
        return key
    }

    static func makeStore(
        _ config: Configuration, env: [String: String], logger: Logger, awsAccessKeyID: String?, wabsAccount: String? = nil
    ) throws -> any ObjectStore {
        let prefix = config.prefix
        switch prefix.scheme {
        case .file:
            let stop = "/" + prefix.pathPrefix
            return FileStore(root: "/", pruneStop: stop)
        case .s3:
            let s3 = try S3Configuration.resolve(
                bucket: prefix.storeName, env: env, accessKeyFlag: config.awsInstanceProfile ? nil : awsAccessKeyID,
                instanceProfile: config.awsInstanceProfile)
            return try S3Store(config: s3, logger: logger.named("wal_e.blobstore.s3"), retry: .init(attempts: config.retryAttempts))
        case .wabs:
            let wabs = try WABSConfiguration.resolve(container: prefix.storeName, env: env, accountFlag: wabsAccount)
            return try WABSStore(config: wabs, logger: logger.named("wal_e.blobstore.wabs"), attempts: config.retryAttempts)
        case .swift, .gs:
            throw WALEError(
                .user, "the \(prefix.scheme.rawValue):// storage backend is not available in this build of wal-e yet",
                detail: "prefix \(prefix.raw)",
                hint: "use a file:// prefix, or a WAL-E 1.1 binary for this store until wal-e supports it")
        }
    }
}
