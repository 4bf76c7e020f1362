import Synchronization
import Testing
import WALECore

/// The one retry policy: what it retries, how often, and that a cancelled task is not retried.
@Suite struct RetryPolicyTests {
    final class Counts: Sendable {
        let calls = Atomic<Int>(0)
        let warnings = Atomic<Int>(0)
        var logger: Logger { Logger(name: "t") { r in if r.level == .warning { self.warnings.add(1, ordering: .relaxed) } } }
    }

    @Test func transientErrorsAreRetriedToTheBoundThenMarkedExhausted() async {
        let c = Counts()
        let policy = RetryPolicy(attempts: 3, baseDelay: 0.001, maxDelay: 0.001)
        await #expect {
            try await policy.run(logger: c.logger, what: "x") { _ -> Int in
                c.calls.add(1, ordering: .relaxed)
                throw WALEError(.io, "reset")
            }
        } throws: { ($0 as? WALEError)?.retriesExhausted == true }
        #expect(c.calls.load(ordering: .relaxed) == 3)
        #expect(c.warnings.load(ordering: .relaxed) == 2)
    }

    @Test func otherErrorsAreThrownAtOnce() async {
        let c = Counts()
        await #expect(throws: WALEError.self) {
            try await RetryPolicy.default.run(logger: c.logger, what: "x") { _ -> Int in
                c.calls.add(1, ordering: .relaxed)
                throw WALEError(.user, "bad key")
            }
        }
        #expect(c.calls.load(ordering: .relaxed) == 1)
        #expect(c.warnings.load(ordering: .relaxed) == 0)
    }

    /// A sibling's failure cancels the group: a request failing because of that is neither retried
    /// nor reported as a store failure (it was logged as "retrying ... CancellationError()" before).
    @Test func aCancelledTaskIsNotRetriedNorLogged() async {
        let c = Counts()
        let task = Task {
            try await RetryPolicy.default.run(logger: c.logger, what: "x") { _ -> Int in
                c.calls.add(1, ordering: .relaxed)
                withUnsafeCurrentTask { $0?.cancel() }
                throw WALEError(.io, "request failed", detail: "CancellationError()")
            }
        }
        let result = await task.result
        #expect(throws: CancellationError.self) { try result.get() }
        #expect(c.calls.load(ordering: .relaxed) == 1)
        #expect(c.warnings.load(ordering: .relaxed) == 0)
    }
}
