/// Every exit status wal-e uses, in one table (also in docs/exit-codes.md).
///
/// PostgreSQL treats an `archive_command`/`restore_command` status above 125 as fatal, so no
/// ordinary failure uses one. 0, 1 and 2 keep WAL-E's meanings.
public enum WALEExitCode: Int32, Sendable, CaseIterable {
    /// Success.
    case success = 0
    /// User error (configuration, arguments' values, missing input), or wal-fetch: not in the archive.
    case userError = 1
    /// Command-line usage error, or an unexpected internal error.
    case usage = 2
    /// wal-push refused: the archive already holds this WAL file with different content.
    case overwriteRefused = 3
    /// wal-push refused: the file is not a WAL segment of the size and position its name implies.
    case notWAL = 4
    /// An archived object is corrupt (bad magic, checksum mismatch, truncated), after retries.
    case corruptObject = 65
    /// Storage or local I/O kept failing after the bounded retries.
    case ioFailure = 74
    /// No subcommand was given (WAL-E's historical code).
    case noSubcommand = 127

    /// wal-fetch: the requested file is not in the archive (PostgreSQL's "not available").
    public static let notFound: WALEExitCode = .userError
}

/// wal-fetch's contract with PostgreSQL (`restore_command`). PostgreSQL reads every status from 1
/// to 125 as "this file is not in the archive": in archive recovery it then ends recovery and
/// promotes at that point, dropping every later transaction. Only a status above 125 (or a
/// signal) makes it stop with FATAL instead. So wal-fetch exits 1 only when the store answered
/// that the object does not exist; any other failure adds 128 to the ordinary code (129, 130,
/// 193, 202: still readable as the cause in PostgreSQL's log), except on a standby, where
/// PostgreSQL retries `restore_command` for ever and a transient storage failure (65, 74) must
/// not stop the server. Configuration and credential errors are fatal in both modes.
public enum RestoreCommandStatus {
    /// Added to an ordinary exit code to make PostgreSQL stop recovery with FATAL.
    public static let fatalOffset: Int32 = 128

    /// How PostgreSQL is running the command.
    public enum Mode: String, Sendable, CaseIterable {
        /// Archive recovery (`recovery.signal`, or a restore that is not a standby).
        case archiveRecovery = "archive-recovery"
        /// A standby (`standby.signal`): PostgreSQL retries, or streams, after a non-fatal status.
        case standby
    }

    /// The status for a wal-fetch that failed with `kind` (nil: not a WALEError, an internal failure).
    public static func status(failure kind: WALEError.Kind?, mode: Mode) -> Int32 {
        guard let kind else { return fatalOffset + WALEExitCode.usage.rawValue }
        if kind == .notFound { return WALEExitCode.notFound.rawValue }
        let ordinary = WALEError(kind, "").exitCode.rawValue
        if mode == .standby && (kind == .io || kind == .corrupt) { return ordinary }
        return fatalOffset + ordinary
    }

    /// The status for a command line that did not parse: a broken restore_command is a
    /// configuration error, fatal in both modes.
    public static let usageError: Int32 = fatalOffset + WALEExitCode.usage.rawValue

    /// Whether PostgreSQL stops (FATAL) on this status rather than treating the file as missing.
    public static func isFatalForPostgres(_ status: Int32) -> Bool { status > 125 }
}
