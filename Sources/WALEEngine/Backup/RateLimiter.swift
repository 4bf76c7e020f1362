import WALEStorage

/// A token bucket shared by every reader of a backup: `--cluster-read-rate-limit` caps the total.
public actor RateLimiter {
    let bytesPerSecond: Double
    private var nextFree: Double = 0
    /// Up to this much may be read ahead of schedule (one second's worth, at most 8 MiB).
    let burst: Double

    public init(bytesPerSecond: Int64) {
        self.bytesPerSecond = Double(max(1, bytesPerSecond))
        burst = min(Double(bytesPerSecond), 8 * 1024 * 1024) / Double(max(1, bytesPerSecond))
    }

    /// Waits until `n` more bytes may be read: a generic cell-rate schedule, so by any time T at
    /// most `rate × (T + burst)` bytes have been granted.
    public func acquire(_ n: Int) async throws {
        let wait = reserve(n, now: POSIX.monotonic())
        if wait > 0 { try await Task.sleep(nanoseconds: UInt64(wait * 1e9)) }
    }

    /// Books `n` bytes at time `now` and returns how long the caller must wait before reading them.
    func reserve(_ n: Int, now: Double) -> Double {
        nextFree = max(nextFree, now) + Double(n) / bytesPerSecond
        return max(0, nextFree - now - burst)
    }
}
