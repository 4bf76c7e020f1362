/// Runs `body` over `items` with at most `width` at once; the results in the items' order. The
/// first error cancels the rest and is thrown. backup-fetch's partitions, verify's partitions and
/// WAL segments use it.
public func boundedConcurrently<T: Sendable, R: Sendable>(
    _ items: [T], width: Int, _ body: @escaping @Sendable (T) async throws -> R
) async throws -> [R] {
    try await withThrowingTaskGroup(of: (Int, R).self) { group in
        var next = 0
        var out: [R?] = Array(repeating: nil, count: items.count)
        func start() {
            let (i, item) = (next, items[next])
            next += 1
            group.addTask { (i, try await body(item)) }
        }
        while next < min(max(1, width), items.count) { start() }
        while let (i, r) = try await group.next() {
            out[i] = r
            if next < items.count { start() }
        }
        return out.map { $0! }
    }
}
