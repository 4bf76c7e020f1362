import Testing
import WALEStorage
@testable import WALEEngine

@Suite struct RateLimiterTests {
    @Test func limitsTheTotalRateWithABoundedBurst() async throws {
        let rate: Int64 = 20_000_000
        let limiter = RateLimiter(bytesPerSecond: rate)
        let started = POSIX.monotonic()
        try await withThrowingTaskGroup(of: Void.self) { g in
            for _ in 0..<3 {  // three readers share the limit
                g.addTask { for _ in 0..<10 { try await limiter.acquire(1_000_000) } }
            }
            try await g.waitForAll()
        }
        let elapsed = POSIX.monotonic() - started
        let burst = 8.0 * 1024 * 1024 / Double(rate)
        // 30 MB at 20 MB/s is 1.5 s, less at most one burst allowance.
        #expect(elapsed >= 1.5 - burst - 0.05, "\(elapsed)")
        #expect(elapsed < 4, "\(elapsed)")
    }
}
