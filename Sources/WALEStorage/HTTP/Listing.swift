import WALECore

/// Every page of a listing: `page(token)` returns one page's objects and the token of the next
/// page (nil after the last). No cap on the number of objects (WAL-E's Swift listing stopped at
/// 10,000 before 1.1.1).
func listAllPages(_ page: (_ token: String?) async throws -> ([ObjectInfo], next: String?)) async throws -> [ObjectInfo] {
    var out: [ObjectInfo] = []
    var token: String?
    repeat {
        let (objects, next) = try await page(token)
        out += objects
        token = next
    } while token != nil
    return out
}

/// Deletes keys with one request each, `concurrency` at a time (stores with no batch delete).
/// `one(key)` returns nil when the key is gone (a missing key included) or the store's reason
/// it is not; the failures are reported together.
func deleteEach(_ keys: [String], service: String, concurrency: Int = 8, _ one: @escaping @Sendable (String) async throws -> String?) async throws {
    var failed: [String] = []
    try await withThrowingTaskGroup(of: String?.self) { group in
        var next = 0
        func start() {
            let key = keys[next]
            next += 1
            group.addTask {
                try await one(key).map { "\(key)\t\($0)" }
            }
        }
        while next < min(concurrency, keys.count) { start() }
        while let done = try await group.next() {
            if let done { failed.append(done) }
            if next < keys.count { start() }
        }
    }
    if !failed.isEmpty {
        throw WALEError(.io, "\(service) could not delete \(failed.count) objects", detail: failed.prefix(10).joined(separator: "; "))
    }
}
