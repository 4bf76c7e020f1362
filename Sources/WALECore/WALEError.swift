/// The error every layer turns its failures into before they reach the executable: a category
/// that picks the exit code, a message naming the key or path, and WAL-E's DETAIL and HINT lines.
public struct WALEError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Bad configuration or input given by the user.
        case user
        /// An object or file that was asked for does not exist.
        case notFound
        /// The archive holds different bytes under this name.
        case overwriteRefused
        /// The input file is not a WAL segment.
        case notWAL
        /// Stored bytes fail their format or checksum checks.
        case corrupt
        /// Storage or local I/O failed (possibly transient).
        case io
        /// A bug or an impossible state.
        case `internal`
    }

    public var kind: Kind
    public var message: String
    public var detail: String?
    public var hint: String?
    /// The store already retried this I/O failure as often as the policy allows: retrying the
    /// whole operation again would multiply the bound on its time.
    public var retriesExhausted = false

    public init(_ kind: Kind, _ message: String, detail: String? = nil, hint: String? = nil) {
        self.kind = kind
        self.message = message
        self.detail = detail
        self.hint = hint
    }

    public var description: String {
        var s = message
        if let detail { s += " (\(detail))" }
        return s
    }

    /// Whether retrying the same operation could succeed.
    public var isTransient: Bool { (kind == .io && !retriesExhausted) || kind == .corrupt }

    /// This error, marked as having used up the store's retries.
    public func exhaustingRetries() -> WALEError {
        var e = self
        e.retriesExhausted = true
        return e
    }

    public var exitCode: WALEExitCode {
        switch kind {
        case .user, .notFound: return .userError
        case .overwriteRefused: return .overwriteRefused
        case .notWAL: return .notWAL
        case .corrupt: return .corruptObject
        case .io: return .ioFailure
        case .internal: return .usage
        }
    }
}
