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
        var storeFlags = flags
        if let k = awsAccessKeyID { storeFlags.awsAccessKeyID = k }
        return Context(
            config: config, logger: logger,
            store: try Stores.make(config, flags: storeFlags, env: env, logger: logger),
            compression: Compression(name: config.compressionName)!,
            retry: RetryPolicy(attempts: config.retryAttempts))
    }

    /// How new objects are encrypted: to the gpg key once gpg has shown it can encrypt to it, or
    /// natively to the public keys of WALE_ENCRYPTION_PUBLIC_KEYS (each file read and checked),
    /// before anything is written; clear without either. Both at once is refused.
    func sealing() throws -> Sealing {
        let recipients = try EncryptionKeys.recipients(env: Context.environment())
        if let key = config.gpgKeyID {
            guard recipients.isEmpty else {
                throw WALEError(
                    .user, "both WALE_GPG_KEY_ID and \(EncryptionKeys.publicKeysVariable) are set",
                    hint: "choose one encryption for new objects (objects of either kind are read whatever is set)")
            }
            try GPG.checkEncryptionKey(key)
            return .gpg(keyID: key)
        }
        return recipients.isEmpty ? .clear : .native(recipients)
    }
}
