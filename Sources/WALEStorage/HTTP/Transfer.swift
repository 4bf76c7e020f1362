import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import WALECore

/// What bounds every HTTP transfer in time, on every store. A small request (HEAD, listing,
/// sentinel, manifest, PUT of a part) must be over, body included, within `requestTimeout`; a
/// streamed body must keep moving: a window of `stallSeconds` in which less than
/// `minRate × stallSeconds` bytes arrived aborts the transfer, which is then resumed from the last
/// good byte. Between two chunks the HTTP client's idle-read timeout (at most `stallSeconds`)
/// bounds a store that sends nothing at all.
public struct TransferLimits: Sendable, Equatable {
    public var requestTimeout: Double = 60
    public var stallSeconds: Double = 30
    public var minRate: Double = 16384

    public init() {}

    /// `WALE_STALL_TIMEOUT` (seconds) and `WALE_STALL_MIN_RATE` (bytes per second), and the
    /// store's own request timeout variable.
    public static func resolve(env: [String: String], timeoutVariable: String) throws(WALEError) -> TransferLimits {
        var l = TransferLimits()
        func positive(_ name: String) throws(WALEError) -> Double? {
            guard let t = env[name], !t.isEmpty else { return nil }
            guard let v = Double(t), v > 0, v.isFinite else {
                throw WALEError(.user, "\(name)=\(t) is not a positive number", hint: "unset it for the default, or give e.g. 30")
            }
            return v
        }
        if let v = try positive(timeoutVariable) { l.requestTimeout = v }
        if let v = try positive("WALE_STALL_TIMEOUT") { l.stallSeconds = v }
        if let v = try positive("WALE_STALL_MIN_RATE") { l.minRate = v }
        return l
    }

    var deadline: TimeAmount { .milliseconds(Int64(requestTimeout * 1000)) }
    /// The HTTP client's idle-read timeout: nothing at all for this long ends a request.
    var idleRead: TimeAmount { .milliseconds(Int64(min(30, stallSeconds, requestTimeout) * 1000)) }
}

/// An error's text for a message, without anything an HTTP library may have quoted from the
/// request (the Authorization header, a signature, a SAS token or a session token).
func redactedDescription(_ error: any Error) -> String {
    let s = "\(error)"
    let lower = s.lowercased()
    for marker in ["authorization", "signature", "credential=", "sharedkey", "x-amz-security-token", "sig=", "x-amz-date"]
    where lower.contains(marker) {
        return "\(type(of: error)) (its text is withheld: it quotes the request's headers)"
    }
    return s
}

/// Reads a whole small body, failing once `deadline` (monotonic seconds) has passed or `limit`
/// bytes are exceeded.
func collectBody(_ body: HTTPClientResponse.Body, limit: Int, deadline: Double, what: String) async throws -> [UInt8] {
    var data: [UInt8] = []
    for try await var chunk in body {
        data += chunk.readBytes(length: chunk.readableBytes) ?? []
        if data.count > limit { throw WALEError(.io, "unexpectedly large response to \(what)") }
        if POSIX.monotonic() > deadline {
            throw WALEError(.io, "the response to \(what) did not arrive in time", hint: "the request timeout bounds the whole answer")
        }
    }
    return data
}

/// The minimum-progress rule of `TransferLimits` over one streamed body.
struct ProgressWatchdog {
    let limits: TransferLimits
    var windowStart = POSIX.monotonic()
    var bytes: Int64 = 0

    init(_ limits: TransferLimits) { self.limits = limits }

    mutating func reset() {
        windowStart = POSIX.monotonic()
        bytes = 0
    }

    /// Counts `n` more bytes; throws when a whole window went by below the minimum rate.
    mutating func record(_ n: Int, what: String) throws {
        bytes += Int64(n)
        let now = POSIX.monotonic()
        let elapsed = now - windowStart
        guard elapsed >= limits.stallSeconds else { return }
        if Double(bytes) < limits.minRate * elapsed {
            throw WALEError(
                .io, "\(what) stalled: \(bytes) bytes in \(Int(elapsed)) s, below the minimum of \(Int(limits.minRate)) bytes/s",
                hint: "WALE_STALL_TIMEOUT and WALE_STALL_MIN_RATE set this rule")
        }
        windowStart = now
        bytes = 0
    }
}

/// A GET's body that survives resets and stalls: when the body fails part way (a reset, the
/// idle timeout, the progress watchdog) it asks for the rest from the last good byte
/// (`open(offset, etag)` sends `Range: bytes=offset-` and `If-Match`; the answer must be that
/// rest), with the store's retry
/// policy's bounded attempts and backoff, so a reader never sees the failure unless the store
/// keeps failing. A body shorter than its Content-Length is a failure too.
final class ResumableBody: ObjectMetadataSource {
    typealias Open = (_ offset: Int64, _ etag: String?) async throws -> HTTPClientResponse
    private var iterator: HTTPClientResponse.Body.AsyncIterator
    private let open: Open
    private let what: String
    private let retry: RetryBudget
    private var watchdog: ProgressWatchdog
    private let etag: String?
    private let length: Int64?
    private var offset: Int64 = 0
    let metadata: [String: String]

    init(first: HTTPClientResponse, metadata: [String: String], what: String, limits: TransferLimits, retry: RetryBudget, open: @escaping Open) {
        self.metadata = metadata
        iterator = first.body.makeAsyncIterator()
        etag = first.headers.first(name: "etag")
        length = first.headers.first(name: "content-length").flatMap { Int64($0) }
        self.open = open
        self.what = what
        self.retry = retry
        watchdog = ProgressWatchdog(limits)
    }

    func next() async throws -> [UInt8]? {
        while true {
            do {
                guard var b = try await iterator.next() else {
                    if let length, offset < length {
                        throw WALEError(.io, "\(what) ended after \(offset) of \(length) bytes")
                    }
                    return nil
                }
                let n = b.readableBytes
                try watchdog.record(n, what: what)
                guard n > 0 else { continue }
                offset += Int64(n)
                return b.readBytes(length: n)
            } catch {
                let e = (error as? WALEError) ?? WALEError(.io, "reading \(what) failed", detail: redactedDescription(error))
                if Task.isCancelled { throw CancellationError() }  // not a failure of the store: nothing to resume
                guard e.kind == .io, let wait = retry.nextDelay() else {
                    throw e.exhaustingRetries()
                }
                retry.logger.warning(
                    "resuming \(what) at byte \(offset)", detail: e.description, hint: "attempt \(retry.used + 1) of \(retry.attempts)")
                try await Task.sleep(nanoseconds: UInt64(wait * 1e9))
                let resp = try await open(offset, etag)
                try checkResumed(resp, offset: offset, what: what)
                iterator = resp.body.makeAsyncIterator()
                watchdog.reset()
            }
        }
    }
}

/// The attempts one transfer may still make (the store's retry policy, counted across resumes).
final class RetryBudget {
    let policy: RetryPolicy
    let logger: Logger
    private(set) var used = 1
    var attempts: Int { policy.attempts }

    init(_ policy: RetryPolicy, logger: Logger) {
        self.policy = policy
        self.logger = logger
    }

    /// The backoff before the next attempt (the policy's), or nil when none is left.
    func nextDelay() -> Double? {
        guard used < attempts else { return nil }
        used += 1
        return policy.delay(afterFailure: used - 1)
    }
}

/// `bytes=N-` and `If-Match` for the rest of an object.
func rangeHeaders(offset: Int64, etag: String?, rangeHeader: String = "range") -> [(String, String)] {
    var h: [(String, String)] = [(rangeHeader, "bytes=\(offset)-")]
    if let etag { h.append(("if-match", etag)) }
    return h
}

/// The check that an answer to `rangeHeaders` is the rest of the object from `offset`.
func checkResumed(_ resp: HTTPClientResponse, offset: Int64, what: String) throws {
    if resp.status == .preconditionFailed {
        throw WALEError(.io, "\(what) changed while it was being read", hint: "the object was replaced; the read starts over")
    }
    let range = resp.headers.first(name: "content-range") ?? ""
    guard resp.status == .partialContent, range.hasPrefix("bytes \(offset)-") else {
        throw WALEError(.io, "the store did not resume \(what) at byte \(offset) (answered \(resp.status.code) \(range))")
    }
}
