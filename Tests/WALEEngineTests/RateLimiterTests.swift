import Testing
import WALEStorage
@testable import WALEEngine

@Suite struct RateLimiterTests {
    /// The schedule, with explicit times: by any time T at most rate × (T + burst) bytes are granted,
    /// and a reader that keeps asking is never held back more than that.
    @Test func grantsRateTimesTimePlusOneBurst() async {
        let rate: Int64 = 20_000_000
        let limiter = RateLimiter(bytesPerSecond: rate)
        let burst = 8.0 * 1024 * 1024 / Double(rate)
        var granted = 0.0
        var t = 0.0
        for _ in 0..<30 {
            let wait = await limiter.reserve(1_000_000, now: t)
            t += wait  // the reader sleeps, then reads
            granted += 1_000_000
            #expect(granted <= Double(rate) * (t + burst) + 1, "granted \(granted) by \(t)")
        }
        // 30 MB at 20 MB/s: 1.5 s, less one burst allowance, and no more.
        #expect(abs(t - (1.5 - burst)) < 1e-9, "\(t)")
        // Idle time does not accumulate beyond the burst.
        let afterIdle = await limiter.reserve(Int(Double(rate) * burst) + 1_000_000, now: t + 100)
        #expect(abs(afterIdle - 0.05) < 1e-9, "\(afterIdle)")
    }

    @Test func realTimeLowerBound() async throws {
        let rate: Int64 = 20_000_000
        let limiter = RateLimiter(bytesPerSecond: rate)
        let started = POSIX.monotonic()
        try await withThrowingTaskGroup(of: Void.self) { g in
            for _ in 0..<3 { g.addTask { for _ in 0..<10 { try await limiter.acquire(1_000_000) } } }
            try await g.waitForAll()
        }
        let burst = 8.0 * 1024 * 1024 / Double(rate)
        #expect(POSIX.monotonic() - started >= 1.5 - burst - 0.05)
    }
}
