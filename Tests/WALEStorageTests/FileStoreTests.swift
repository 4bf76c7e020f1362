#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import WALECore
@testable import WALEStorage

/// One directory per test process holds every test's scratch directory; it is removed when the
/// process exits (each run used to leave hundreds of directories in /tmp).
let scratchRoot: String = {
    let root = makeTemporaryDirectory("/tmp/wale-unit-XXXXXX")
    atexit { _ = try? FileManager.default.removeItem(atPath: scratchRoot) }
    return root
}()

func makeTemporaryDirectory(_ template: String) -> String {
    var t = Array(template.utf8CString)
    let p = t.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }!
    return String(cString: p)
}

func scratchDirectory() -> String { makeTemporaryDirectory(scratchRoot + "/XXXXXX") }

@Suite struct FileStoreTests {
    @Test func writeReadListDelete() async throws {
        let root = scratchDirectory()
        let store = FileStore(root: root, pruneStop: root + "/p")
        let data = Array("hello".utf8)
        #expect(try await store.write("p/wal_005/a.lzo", from: BytesSource(data), options: WriteOptions()) == .created)
        #expect(try await store.write("p/wal_005/b.lzo", from: BytesSource([]), options: WriteOptions()) == .created)
        #expect(try await store.write("p/basebackups_005/x/y", from: BytesSource([1]), options: WriteOptions()) == .created)
        #expect(try await store.info("p/wal_005/a.lzo")?.size == 5)
        #expect(try await store.info("p/wal_005/missing") == nil)
        #expect(try await store.read("p/wal_005/a.lzo") { try await $0.collect() } == data)
        #expect(try await store.read("p/wal_005/b.lzo") { try await $0.collect() } == [])
        await #expect(throws: WALEError.self) { try await store.read("p/wal_005/missing") { try await $0.collect() } }

        // Directory order, as WAL-E's os.walk: compare as sets.
        #expect(try await store.list(prefix: "p/wal_005/").map(\.key).sorted() == ["p/wal_005/a.lzo", "p/wal_005/b.lzo"])
        #expect(
            try await store.list(prefix: "p/wal_005/").map(\.key)
                == POSIX.listDirectory(root + "/p/wal_005").map { "p/wal_005/" + $0 })
        #expect(try await store.list(prefix: "p/wal_005/a").map(\.key) == ["p/wal_005/a.lzo"])
        #expect(try await store.list(prefix: "p/").count == 3)
        #expect(try await store.list(prefix: "nothing/here/").isEmpty)

        try await store.delete(["p/basebackups_005/x/y", "p/basebackups_005/x/never-existed"])
        #expect(!POSIX.isDirectory(root + "/p/basebackups_005"))  // emptied directories are pruned
        #expect(POSIX.isDirectory(root + "/p"))  // but never the prefix itself
        try await store.delete(["p/basebackups_005/x/y"])  // idempotent
    }

    @Test func ifAbsentNeverReplaces() async throws {
        let root = scratchDirectory()
        let store = FileStore(root: root)
        var opts = WriteOptions(ifAbsent: true)
        opts.durable = true
        #expect(try await store.write("k", from: BytesSource([1, 2, 3]), options: opts) == .created)
        #expect(try await store.write("k", from: BytesSource([9, 9]), options: opts) == .alreadyExists)
        #expect(try await store.read("k") { try await $0.collect() } == [1, 2, 3])
        // Unconditional writes replace.
        #expect(try await store.write("k", from: BytesSource([7]), options: WriteOptions()) == .created)
        #expect(try await store.read("k") { try await $0.collect() } == [7])
        // No temporary files are left behind or listed.
        #expect(try POSIX.listDirectory(root) == ["k"])
    }

    @Test func failedWriteLeavesNothing() async throws {
        final class Failing: ByteSource {
            var sent = false
            func next() async throws -> [UInt8]? {
                if sent { throw WALEError(.io, "source broke") }
                sent = true
                return [1, 2, 3]
            }
        }
        let root = scratchDirectory()
        let store = FileStore(root: root)
        await #expect(throws: WALEError.self) { try await store.write("d/k", from: Failing(), options: WriteOptions()) }
        #expect(try await store.info("d/k") == nil)
        #expect(try POSIX.listDirectory(root + "/d").isEmpty)
    }

    @Test func concurrentIfAbsentWritersOneWins() async throws {
        let root = scratchDirectory()
        let store = FileStore(root: root)
        let outcomes = try await withThrowingTaskGroup(of: WriteOutcome.self) { g in
            for i in 0..<8 {
                g.addTask { try await store.write("same", from: BytesSource([UInt8(i)]), options: WriteOptions(ifAbsent: true)) }
            }
            return try await g.reduce(into: []) { $0.append($1) }
        }
        #expect(outcomes.filter { $0 == .created }.count == 1)
        #expect(try await store.read("same") { try await $0.collect() }.count == 1)
    }
}
