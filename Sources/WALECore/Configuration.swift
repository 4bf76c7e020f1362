/// Settings that every command shares, resolved once at the edge from flags and the
/// environment (flags > environment > defaults), with WAL-E's precedence for the prefix.
public struct GlobalFlags: Sendable, Equatable {
    public var filePrefix: String?
    public var gsPrefix: String?
    public var s3Prefix: String?
    public var wabsPrefix: String?
    public var gpgKeyID: String?
    public var terse = false
    public var compression: String?
    /// `-k/--aws-access-key-id` (the secret only ever comes from the environment).
    public var awsAccessKeyID: String?
    /// `--aws-instance-profile`: S3 keys from the EC2 instance metadata service.
    public var awsInstanceProfile = false
    /// `-a/--wabs-account-name` (else `WABS_ACCOUNT_NAME`).
    public var wabsAccountName: String?

    public init(
        filePrefix: String? = nil, gsPrefix: String? = nil, s3Prefix: String? = nil, wabsPrefix: String? = nil,
        gpgKeyID: String? = nil, terse: Bool = false, compression: String? = nil
    ) {
        self.filePrefix = filePrefix
        self.gsPrefix = gsPrefix
        self.s3Prefix = s3Prefix
        self.wabsPrefix = wabsPrefix
        self.gpgKeyID = gpgKeyID
        self.terse = terse
        self.compression = compression
    }
}

public enum LogDestination: String, Sendable { case stderr, syslog }

public struct Configuration: Sendable {
    public var prefix: StoragePrefix
    /// Where the prefix came from (`--file-prefix`, `WALE_S3_PREFIX`...), for messages.
    public var prefixSource: String
    public var terse: Bool
    public var logDestinations: [LogDestination]
    /// syslog facility code (`LOG_USER` etc. shifted, as syslog(3) wants it).
    public var syslogFacility: Int32
    /// The codec name for new objects (`lzop` unless `--compression`/`WALE_COMPRESSION` say otherwise).
    public var compressionName: String
    /// Total attempts for operations retried on transient errors.
    public var retryAttempts: Int
    /// `--gpg-key-id`/`WALE_GPG_KEY_ID`: new objects are encrypted to this key with gpg, as
    /// WAL-E does. Reading decrypts whatever is encrypted, set or not.
    public var gpgKeyID: String?
    public var warnings: [String]
    /// S3 credentials from the instance metadata service (`--aws-instance-profile` or
    /// `AWS_INSTANCE_PROFILE` = true/1).
    public var awsInstanceProfile = false
    /// `WALE_ARCHIVE_ASYNC=on`: wal-push leaves the `.ready` backlog to a detached helper and
    /// returns once its own segment is archived (as pgBackRest's `archive-async`).
    public var archiveAsync = false

    public static let defaultRetryAttempts = 5

    /// The order WAL-E consults prefix sources in: the first non-empty value wins, and its scheme
    /// picks the backend whichever option supplied it.
    public static func prefixCandidates(_ f: GlobalFlags, _ env: [String: String]) -> [(String, String?)] {
        [
            ("--file-prefix", f.filePrefix), ("--gs-prefix", f.gsPrefix), ("--s3-prefix", f.s3Prefix),
            ("--wabs-prefix", f.wabsPrefix), ("WALE_FILE_PREFIX", env["WALE_FILE_PREFIX"]),
            ("WALE_GS_PREFIX", env["WALE_GS_PREFIX"]), ("WALE_S3_PREFIX", env["WALE_S3_PREFIX"]),
            ("WALE_SWIFT_PREFIX", env["WALE_SWIFT_PREFIX"]), ("WALE_WABS_PREFIX", env["WALE_WABS_PREFIX"]),
        ]
    }

    public static let syslogFacilities: [String: Int32] = [
        "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7, "uucp": 8,
        "cron": 9, "authpriv": 10, "ftp": 11, "local0": 16, "local1": 17, "local2": 18, "local3": 19,
        "local4": 20, "local5": 21, "local6": 22, "local7": 23,
    ]

    public static func resolve(_ f: GlobalFlags, env: [String: String]) throws(WALEError) -> Configuration {
        guard let (source, value) = prefixCandidates(f, env).first(where: { !($0.1 ?? "").isEmpty }) else {
            throw WALEError(
                .user, "no storage prefix defined",
                hint: "Either set one of the --file-prefix, --s3-prefix, --wabs-prefix or --gs-prefix options, or set one of "
                    + "the WALE_FILE_PREFIX, WALE_S3_PREFIX, WALE_WABS_PREFIX, WALE_GS_PREFIX or WALE_SWIFT_PREFIX "
                    + "environment variables, e.g. WALE_FILE_PREFIX=file://localhost/var/backups/pg")
        }
        let prefix: StoragePrefix
        do {
            prefix = try StoragePrefix(parsing: value!)
        } catch {
            throw Self.describe(error, source: source)
        }
        var warnings: [String] = []

        let gpg = (f.gpgKeyID ?? env["WALE_GPG_KEY_ID"]).flatMap { $0.isEmpty ? nil : $0 }

        let compressionName = (f.compression ?? env["WALE_COMPRESSION"]).flatMap { $0.isEmpty ? nil : $0 } ?? "lzop"
        guard ["lzop", "lzo", "zstd", "zst", "lz4"].contains(compressionName.lowercased()) else {
            throw WALEError(
                .user, "unknown compression \"\(compressionName)\"",
                hint: "use lzop (the default; WAL-E can read it), zstd or lz4 in --compression or WALE_COMPRESSION")
        }

        var destinations: [LogDestination] = []
        for part in (env["WALE_LOG_DESTINATION"] ?? "stderr,syslog").split(separator: ",") {
            let name = part.trimmingWhitespace()
            if let d = LogDestination(rawValue: name) {
                destinations.append(d)
            } else if !name.isEmpty {
                warnings.append("unknown log destination \"\(name)\" in WALE_LOG_DESTINATION ignored")
            }
        }

        var facility = syslogFacilities["user"]!
        if let name = env["WALE_SYSLOG_FACILITY"], !name.isEmpty {
            if let v = syslogFacilities[name.lowercased()] {
                facility = v
            } else {
                warnings.append("invalid syslog facility level specified")
            }
        }

        var attempts = defaultRetryAttempts
        if let r = env["WALE_RETRIES"], !r.isEmpty {
            if let n = Int(r), n > 0 {
                attempts = n
            } else {
                warnings.append("WALE_RETRIES=\(r) ignored: wal-e always bounds retries; using \(defaultRetryAttempts)")
            }
        }

        // WAL-E's exact reading (a ValueError, exit 2, for anything else), unlike wal-e's own
        // on/off settings below: scripts written for WAL-E must behave the same.
        var instanceProfile = f.awsInstanceProfile
        if let v = env["AWS_INSTANCE_PROFILE"] {
            switch v.lowercased() {
            case "true", "1": instanceProfile = true
            case "false", "0", "": break
            default:
                throw WALEError(.internal, "AWS_INSTANCE_PROFILE=\(v) is not a boolean", hint: "use true, 1, false, 0 or leave it empty")
            }
        }
        if f.awsInstanceProfile && f.awsAccessKeyID != nil {
            throw WALEError(
                .internal, "--aws-access-key-id and --aws-instance-profile cannot be used together",
                hint: "give keys in the environment, or use the instance profile, not both")
        }

        var archiveAsync = false
        if let v = env["WALE_ARCHIVE_ASYNC"] {
            switch v.lowercased() {
            case "on", "true", "1", "yes": archiveAsync = true
            case "off", "false", "0", "no", "": break
            default:
                throw WALEError(.user, "WALE_ARCHIVE_ASYNC=\(v) is neither on nor off", hint: "use on or off, or leave it unset (off)")
            }
        }

        var c = Configuration(
            prefix: prefix, prefixSource: source, terse: f.terse, logDestinations: destinations,
            syslogFacility: facility << 3, compressionName: compressionName, retryAttempts: attempts, warnings: warnings)
        c.awsInstanceProfile = instanceProfile
        c.gpgKeyID = gpg
        c.archiveAsync = archiveAsync
        return c
    }

    static func describe(_ e: StoragePrefix.ParseError, source: String) -> WALEError {
        switch e {
        case .notAURL(let v):
            return WALEError(.user, "\(source) is not a storage URL: \"\(v)\"", hint: "use SCHEME://STORE/PATH, e.g. file://localhost/var/backups/pg")
        case .unknownScheme(let s):
            return WALEError(
                .user, "\(source) has an unknown storage scheme \"\(s)\"",
                hint: "supported schemes: s3, wabs, swift, gs, file")
        case .missingStoreName(let v):
            return WALEError(.user, "\(source) names no bucket or container: \"\(v)\"", hint: "use SCHEME://BUCKET/PATH")
        case .relativeFilePath(let v):
            return WALEError(.user, "\(source) has no path: \"\(v)\"", hint: "use file://localhost/ABSOLUTE/PATH")
        }
    }
}

extension StringProtocol {
    /// Without leading and trailing spaces, tabs and newlines.
    public func trimmingWhitespace() -> String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" || f == "\n" || f == "\r" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" || l == "\n" || l == "\r" { s.removeLast() }
        return String(s)
    }
}
