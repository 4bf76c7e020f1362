#if canImport(Glibc)
import Glibc
#endif
import WALECore

/// Bounded retries with exponential backoff and full jitter, for errors that may be transient
/// (`WALEError.isTransient`). Anything else is thrown at once.
public struct RetryPolicy: Sendable {
    /// Total attempts, including the first.
    public var attempts: Int
    public var baseDelay: Double
    public var maxDelay: Double

    public static let `default` = RetryPolicy(attempts: 5, baseDelay: 0.25, maxDelay: 8)
    public static let none = RetryPolicy(attempts: 1, baseDelay: 0, maxDelay: 0)

    public init(attempts: Int, baseDelay: Double, maxDelay: Double) {
        self.attempts = max(1, attempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
    }

    /// The sleep before attempt `n + 1` after failure number `n` (1-based): a random value in
    /// [d/2, d] with d = min(maxDelay, baseDelay · 2^(n-1)).
    public func delay(afterFailure n: Int) -> Double {
        let d = min(maxDelay, baseDelay * Double(1 << min(n - 1, 30)))
        return d / 2 + Double.random(in: 0...(d / 2))
    }

    public func run<R>(
        logger: Logger, what: String, _ body: (_ attempt: Int) async throws -> R
    ) async throws -> R {
        var failure = 0
        while true {
            do {
                return try await body(failure + 1)
            } catch let e as WALEError where e.isTransient && failure + 1 < attempts {
                failure += 1
                let d = delay(afterFailure: failure)
                logger.warning(
                    "retrying \(what) after a failure", detail: e.description,
                    hint: "attempt \(failure + 1) of \(attempts) in \(Int(d * 1000)) ms")
                try await Task.sleep(nanoseconds: UInt64(d * 1e9))
            }
        }
    }
}
