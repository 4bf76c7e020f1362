import WALECore

/// A secret and the time (seconds since the epoch) it stops working, if it does.
public struct Expiring<Value: Sendable & Equatable>: Sendable, Equatable {
    public var value: Value
    public var expiration: Double?
    public init(_ value: Value, expiration: Double?) {
        self.value = value
        self.expiration = expiration
    }
}

/// Holds a temporary secret (AWS instance keys, a Keystone or TempAuth token, an OAuth2 access
/// token) and fetches a new one `margin` seconds before it expires, so a long backup never signs
/// with an expired one. Concurrent callers share one fetch; if a refresh fails while the old value
/// is still valid, the old value is used. A store that is told its token was refused calls
/// `invalidate()` and asks again (once).
public actor TokenCache<Value: Sendable & Equatable> {
    let fetch: @Sendable () async throws -> Expiring<Value>
    let now: @Sendable () -> Double
    let margin: Double
    var current: Expiring<Value>?
    var inFlight: Task<Expiring<Value>, any Error>?
    /// How many fetches succeeded (for tests and logs).
    public private(set) var fetchCount = 0

    public init(
        margin: Double = 300, now: @escaping @Sendable () -> Double = { POSIX.now() },
        fetch: @escaping @Sendable () async throws -> Expiring<Value>
    ) {
        self.margin = margin
        self.now = now
        self.fetch = fetch
    }

    public func value() async throws -> Value {
        if let c = current, c.expiration.map({ now() < $0 - margin }) ?? true { return c.value }
        let task: Task<Expiring<Value>, any Error>
        if let t = inFlight {
            task = t
        } else {
            let f = fetch
            task = Task { try await f() }
            inFlight = task
        }
        do {
            let fresh = try await task.value
            if inFlight == task {
                inFlight = nil
                current = fresh
                fetchCount += 1
            }
            return fresh.value
        } catch {
            if inFlight == task { inFlight = nil }
            if let c = current, let e = c.expiration, now() < e { return c.value }
            throw error
        }
    }

    /// Forgets the cached value (the service said it expired or was revoked).
    public func invalidate() { current = nil }

    /// Forgets the cached value only if it is still `stale` (several requests refused at once
    /// then cause one fetch, not one each).
    public func invalidate(ifStill stale: Value) { if current?.value == stale { current = nil } }
}
