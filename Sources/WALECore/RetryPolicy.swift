/// The one retry policy of wal-e, used by every store for its requests and by the engine for
/// whole operations (a download whose bytes failed their check is fetched again): bounded
/// attempts, exponential backoff capped at `maxDelay`, half jitter. What is retried is decided in
/// one place too, `WALEError.isTransient`: an I/O failure the store has not already retried to the
/// end, or a corrupt download. Everything else is thrown at once, and nothing is retried in a
/// task that was cancelled (a sibling failed, or the command is ending): its request failed
/// because it was cancelled, and a retry would only log a warning and wait for nothing.
public struct RetryPolicy: Sendable {
    /// Total attempts, including the first.
    public var attempts: Int
    public var baseDelay: Double
    public var maxDelay: Double

    public static let `default` = RetryPolicy(attempts: 5)
    public static let none = RetryPolicy(attempts: 1, baseDelay: 0, maxDelay: 0)

    public init(attempts: Int, baseDelay: Double = 0.25, maxDelay: Double = 8) {
        self.attempts = max(1, attempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    /// The sleep before attempt `n + 1` after failure number `n` (1-based): a random value in
    /// [d/2, d] with d = min(maxDelay, baseDelay · 2^(n-1)).
    public func delay(afterFailure n: Int) -> Double {
        let d = min(maxDelay, baseDelay * Double(1 << min(max(n, 1) - 1, 30)))
        return d / 2 + Double.random(in: 0...(d / 2))
    }

    /// Runs `body` (given the attempt number, from 1) until it succeeds, throws an error that is not
    /// transient, or has used every attempt; the last transient error is then thrown marked
    /// `retriesExhausted`, so an outer layer does not multiply the bound.
    public func run<R>(logger: Logger, what: String, _ body: (_ attempt: Int) async throws -> R) async throws -> R {
        var failure = 0
        while true {
            do {
                return try await body(failure + 1)
            } catch let e as WALEError where e.isTransient {
                if Task.isCancelled { throw CancellationError() }
                guard failure + 1 < attempts else { throw e.kind == .io ? e.exhaustingRetries() : e }
                failure += 1
                let d = delay(afterFailure: failure)
                logger.warning("retrying \(what)", detail: e.description, hint: "attempt \(failure + 1) of \(attempts) in \(Int(d * 1000)) ms")
                try await Task.sleep(nanoseconds: UInt64(d * 1e9))
            }
        }
    }
}
