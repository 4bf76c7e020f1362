import WALECore

/// The one place a prefix's scheme becomes a store: each scheme's constructor (its configuration
/// resolved from the environment and flags), the logger name WAL-E used for it, and the command
/// line flags a child process (wal-fetch's prefetcher) needs to open the same store. Secrets are
/// never among those flags: they come from the environment the child inherits.
public enum Stores {
    public struct Entry: Sendable {
        public let scheme: StorageScheme
        let loggerName: String
        let make: @Sendable (_ prefix: StoragePrefix, _ config: Configuration, _ flags: GlobalFlags, _ env: [String: String], _ logger: Logger) throws -> any ObjectStore
        let childFlags: @Sendable (_ flags: GlobalFlags) -> [String]
    }

    static func retry(_ config: Configuration) -> RetryPolicy { RetryPolicy(attempts: config.retryAttempts, baseDelay: 0.2) }

    public static let all: [StorageScheme: Entry] = {
        var e: [StorageScheme: Entry] = [:]
        e[.file] = Entry(scheme: .file, loggerName: "wal_e.blobstore.file", make: { prefix, _, _, _, _ in
            FileStore(root: "/", pruneStop: "/" + prefix.pathPrefix)
        }, childFlags: { _ in [] })
        e[.s3] = Entry(scheme: .s3, loggerName: "wal_e.blobstore.s3", make: { prefix, config, flags, env, logger in
            let s3 = try S3Configuration.resolve(
                bucket: prefix.storeName, env: env, accessKeyFlag: config.awsInstanceProfile ? nil : flags.awsAccessKeyID,
                instanceProfile: config.awsInstanceProfile)
            return try S3Store(config: s3, logger: logger, retry: retry(config))
        }, childFlags: { f in
            (f.awsAccessKeyID.map { ["--aws-access-key-id", $0] } ?? []) + (f.awsInstanceProfile ? ["--aws-instance-profile"] : [])
        })
        e[.wabs] = Entry(scheme: .wabs, loggerName: "wal_e.blobstore.wabs", make: { prefix, config, flags, env, logger in
            let wabs = try WABSConfiguration.resolve(container: prefix.storeName, env: env, accountFlag: flags.wabsAccountName)
            return try WABSStore(config: wabs, logger: logger, retry: retry(config))
        }, childFlags: { f in f.wabsAccountName.map { ["--wabs-account-name", $0] } ?? [] })
        e[.swift] = Entry(scheme: .swift, loggerName: "wal_e.blobstore.swift", make: { prefix, config, _, env, logger in
            try SwiftStore(config: try SwiftConfiguration.resolve(container: prefix.storeName, env: env), logger: logger, retry: retry(config))
        }, childFlags: { _ in [] })
        e[.gs] = Entry(scheme: .gs, loggerName: "wal_e.blobstore.gs", make: { prefix, config, _, env, logger in
            try GCSStore(config: try GCSConfiguration.resolve(bucket: prefix.storeName, env: env), logger: logger, retry: retry(config))
        }, childFlags: { _ in [] })
        return e
    }()

    /// The store the configuration's prefix names.
    public static func make(_ config: Configuration, flags: GlobalFlags, env: [String: String], logger: Logger) throws -> any ObjectStore {
        let prefix = config.prefix
        guard let entry = all[prefix.scheme] else {
            throw WALEError(
                .user, "the \(prefix.scheme.rawValue):// storage backend is not available in this build of wal-e yet",
                detail: "prefix \(prefix.raw)",
                hint: "use another store, or a WAL-E 1.1 binary for this store until wal-e supports it")
        }
        return try entry.make(prefix, config, flags, env, logger.named(entry.loggerName))
    }

    /// The flags that let a child process open the same store as `flags` do for `scheme`.
    public static func childArguments(_ flags: GlobalFlags, scheme: StorageScheme) -> [String] {
        all[scheme]?.childFlags(flags) ?? []
    }
}
