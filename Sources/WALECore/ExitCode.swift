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
