#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import Synchronization
import Testing
import WALECore
@testable import WALEStorage

/// Upload memory: parts cut from a source, the first part read under the budget (growing with a
/// body that can be read again), and the budget itself.
@Suite struct PartReaderTests {
    @Test func firstPartKeepsTheWholeObjectWithinTheSlack() async throws {
        let small = PartReader(BytesSource([UInt8](repeating: 1, count: 10) + [UInt8](repeating: 2, count: 3), chunkSize: 4), size: 8)
        let s = try await small.first(slack: 5)!
        #expect(s.ended && s.bytes.readableBytes == 13)
        let large = PartReader(BytesSource([UInt8](repeating: 1, count: 10) + [UInt8](repeating: 2, count: 10), chunkSize: 4), size: 8)
        let l = try await large.first(slack: 5)!
        #expect(!l.ended && Array(l.bytes.readableBytesView) == [UInt8](repeating: 1, count: 8))
        #expect(Array(try await large.next().readableBytesView) == [1, 1] + [UInt8](repeating: 2, count: 6))
        #expect(Array(try await large.next().readableBytesView) == [2, 2, 2, 2])
        #expect(try await large.next().readableBytes == 0)
    }
}

/// A parted-upload target in memory: whole objects kept, with the most PUTs in flight at once.
final class MemoryPartedTarget: PartedUploadTarget, @unchecked Sendable {
    let partSize: Int
    let partsInFlight = 2
    let budget: ByteBudget
    let objects = Mutex<[String: ([UInt8], [String: String])]>([:])
    let flying = Mutex((now: 0, most: 0))
    init(partSize: Int, capacity: Int) {
        self.partSize = partSize
        budget = ByteBudget(capacity: capacity)
    }

    func putWhole(_ key: String, _ body: any RequestBody, metadata: [String: String], options: WriteOptions) async throws -> WriteOutcome {
        flying.withLock { $0.now += 1; $0.most = max($0.most, $0.now) }
        try await Task.sleep(nanoseconds: 50_000_000)
        flying.withLock { $0.now -= 1 }
        var bytes: [UInt8] = []
        try body.forEachStretch { bytes += $0 }
        objects.withLock { [bytes] in $0[key] = (bytes, metadata) }
        return .created
    }

    /// Parted uploads: each part's bytes by key and number, the object made from them on commit.
    let parts = Mutex<[String: [Int: [UInt8]]]>([:])
    struct Session: PartSession {
        let target: MemoryPartedTarget
        let key: String
        func put(part number: Int, _ body: ByteBuffer) async throws -> Int {
            target.parts.withLock { $0[key, default: [:]][number] = Array(body.readableBytesView) }
            return number
        }
        func commit(_ numbers: [Int], metadata: [String: String]) async throws -> WriteOutcome {
            let bytes = target.parts.withLock { p in numbers.flatMap { p[key]?[$0] ?? [] } }
            target.objects.withLock { $0[key] = (bytes, metadata) }
            return .created
        }
        func abort() async {}
    }
    func begin(_ key: String, options: WriteOptions) async throws -> Session { Session(target: self, key: key) }

    func info(_ key: String) async throws -> ObjectInfo? { nil }
    func read<R>(_ key: String, _ body: (any ByteSource) async throws -> R) async throws -> R {
        throw WALEError(.notFound, "no reads here")
    }
    func write(_ key: String, from source: any ByteSource, options: WriteOptions) async throws -> WriteOutcome {
        try await partedWrite(key, from: source, options: options)
    }
    func list(prefix: String) async throws -> [ObjectInfo] { [] }
    func delete(_ keys: [String]) async throws {}
}

final class Counter: Sendable {
    let m = Mutex(0)
    func add() { m.withLock { $0 += 1 } }
    var value: Int { m.withLock { $0 } }
}

@Suite struct FirstPartBudgetTests {
    static let mib = 1 << 20
    /// A WAL-like body: `size` bytes, 256 KiB at a time.
    static func body(_ size: Int, fill: UInt8) -> BytesSource { BytesSource([UInt8](repeating: fill, count: size), chunkSize: 256 << 10) }
    static func walOptions() -> WriteOptions {
        var o = WriteOptions(ifAbsent: true)
        o.sizeHint = Int64(16 * Self.mib)
        return o
    }

    @Test func aBodyThatCannotBeReadAgainHoldsTheMostItCouldNeed() async throws {
        let budget = ByteBudget(capacity: 16 * Self.mib)
        let read = try await readFirstPart(PartReader(Self.body(7 * Self.mib, fill: 1), size: 5 * Self.mib), options: Self.walOptions(), budget: budget, growing: false)
        guard case .read(let bytes, let ended, let held) = read else { Issue.record("not read: \(read)"); return }
        #expect(ended && bytes.readableBytes == 7 * Self.mib)
        #expect(held == 16 * Self.mib)  // 16 MiB + 1 MiB capped at the budget: nothing else could start
        #expect(await budget.free == 0)
    }

    @Test func aGrowingBodyHoldsWhatItReadRoundedToAMebibyte() async throws {
        let budget = ByteBudget(capacity: 16 * Self.mib)
        let read = try await readFirstPart(
            PartReader(Self.body(7 * Self.mib + 5, fill: 1), size: 5 * Self.mib), options: Self.walOptions(), budget: budget, growing: true)
        guard case .read(let bytes, let ended, let held) = read else { Issue.record("not read: \(read)"); return }
        #expect(ended && bytes.readableBytes == 7 * Self.mib + 5)
        #expect(held == 8 * Self.mib)
        #expect(await budget.free == 8 * Self.mib)
    }

    @Test func aGrowingBodyGivesEverythingBackWhenMemoryIsShort() async throws {
        let budget = ByteBudget(capacity: 16 * Self.mib)
        await budget.acquire(10 * Self.mib)  // another upload's
        let read = try await readFirstPart(PartReader(Self.body(7 * Self.mib, fill: 1), size: 5 * Self.mib), options: Self.walOptions(), budget: budget, growing: true)
        guard case .short = read else { Issue.record("expected short, got \(read)"); return }
        #expect(await budget.free == 6 * Self.mib)
    }

    @Test func aShortBodyIsReadAgainHoldingTheMostOnceThatIsFree() async throws {
        let target = MemoryPartedTarget(partSize: 5 * Self.mib, capacity: 16 * Self.mib)
        await target.budget.acquire(10 * Self.mib)  // another upload's, given back below
        let rereads = Counter()
        var o = Self.walOptions()
        o.lateMetadata = LateMetadata { ["read": "first"] }
        o.reread = {
            rereads.add()
            return RereadBody(source: Self.body(7 * Self.mib, fill: 2), lateMetadata: LateMetadata { ["read": "again"] })
        }
        let options = o
        let write = Task { try await target.write("wal/x", from: Self.body(7 * Self.mib, fill: 2), options: options) }
        while await target.budget.waiting < 1 { try await Task.sleep(nanoseconds: 1_000_000) }
        #expect(rereads.value == 1)
        #expect(await target.budget.free == 6 * Self.mib)  // the short reading gave back all it held
        await target.budget.release(10 * Self.mib)
        #expect(try await write.value == .created)
        let stored = target.objects.withLock { $0["wal/x"] }
        #expect(stored?.0 == [UInt8](repeating: 2, count: 7 * Self.mib))
        #expect(stored?.1["read"] == "again")
        #expect(await target.budget.free == 16 * Self.mib)
    }

    @Test func severalGrowingBodiesGoUpAtOnceAndAShortOneIsReadAgain() async throws {
        let target = MemoryPartedTarget(partSize: 5 * Self.mib, capacity: 16 * Self.mib)
        let rereads = Counter()
        let sizes = [7, 6, 5, 9, 8, 4].map { $0 * Self.mib + 3 }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, size) in sizes.enumerated() {
                group.addTask {
                    var o = Self.walOptions()
                    let tag = UInt8(i + 1)
                    o.lateMetadata = LateMetadata { ["read": "first"] }
                    o.reread = {
                        rereads.add()
                        return RereadBody(source: Self.body(size, fill: tag), lateMetadata: LateMetadata { ["read": "again"] })
                    }
                    let outcome = try await target.write("wal/\(i)", from: Self.body(size, fill: tag), options: o)
                    #expect(outcome == .created)
                }
            }
            try await group.waitForAll()
        }
        let objects = target.objects.withLock { $0 }
        for (i, size) in sizes.enumerated() {
            #expect(objects["wal/\(i)"]?.0 == [UInt8](repeating: UInt8(i + 1), count: size))
        }
        // Holding the most a WAL file could need (17 MiB) each would have sent them one at a time.
        #expect(target.flying.withLock { $0.most } >= 2)
        #expect(await target.budget.free == 16 * Self.mib)
        // An object read again carries the late metadata of the second reading, not the dropped one.
        let again = objects.values.filter { $0.1["read"] == "again" }.count
        #expect(again == rereads.value)
    }
}

/// Bodies spooled to an unnamed file in a directory instead of upload memory (wal-push's).
@Suite struct SpooledUploadTests {
    static let mib = 1 << 20
    static func directory() throws -> String {
        let d = "/tmp/wal-e-spool-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(d, 0o700) == 0 else { throw WALEError(.io, "mkdir \(d)") }
        return d
    }
    static func options(spool: String?, size: Int) -> WriteOptions {
        var o = WriteOptions(ifAbsent: true)
        o.sizeHint = Int64(16 * mib)
        o.spoolDirectory = spool
        o.lateMetadata = LateMetadata { ["size": String(size)] }
        return o
    }

    @Test func spooledSegmentsGoUpAtOnceHoldingNoUploadMemory() async throws {
        let dir = try Self.directory()
        defer { rmdir(dir) }
        // Ten 10.8 MB bodies (this benchmark's WAL after lzop): through a 16 MiB budget in memory
        // they would go one at a time.
        let target = MemoryPartedTarget(partSize: 5 * Self.mib, capacity: 16 * Self.mib)
        let size = 10_800_000
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<10 {
                group.addTask {
                    let body = FirstPartBudgetTests.body(size, fill: UInt8(i + 1))
                    let outcome = try await target.write("wal/\(i)", from: body, options: Self.options(spool: dir, size: size))
                    #expect(outcome == .created)
                }
            }
            try await group.waitForAll()
        }
        let objects = target.objects.withLock { $0 }
        for i in 0..<10 {
            #expect(objects["wal/\(i)"]?.0 == [UInt8](repeating: UInt8(i + 1), count: size))
            #expect(objects["wal/\(i)"]?.1["size"] == String(size))  // late metadata, in the one request
        }
        #expect(target.flying.withLock { $0.most } >= 3)
        #expect(target.parts.withLock { $0.isEmpty })
        #expect(await target.budget.free == 16 * Self.mib)
        // Nothing was ever named in the directory (O_TMPFILE), nothing is left there.
        #expect(try POSIX.listDirectory(dir).isEmpty)
    }

    @Test func aBodyLargerThanOneRequestGoesUpInPartsReadBackFromTheSpool() async throws {
        let dir = try Self.directory()
        defer { rmdir(dir) }
        let target = MemoryPartedTarget(partSize: 5 * Self.mib, capacity: 16 * Self.mib)
        let size = 23 * Self.mib + 5
        let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 13) }
        let outcome = try await target.write("big", from: BytesSource(bytes, chunkSize: 300_000), options: Self.options(spool: dir, size: size))
        #expect(outcome == .created)
        #expect(target.objects.withLock { $0["big"]?.0 } == bytes)
        #expect(target.objects.withLock { $0["big"]?.1["size"] } == String(size))
        #expect(target.parts.withLock { $0["big"]?.count } == 5)
        #expect(await target.budget.free == 16 * Self.mib)
    }

    @Test func withoutASpoolFileTheBodyIsHeldInMemory() async throws {
        let target = MemoryPartedTarget(partSize: 5 * Self.mib, capacity: 16 * Self.mib)
        let o = Self.options(spool: "/nonexistent/wal-e-spool", size: 7 * Self.mib)
        #expect(try await target.write("wal/x", from: FirstPartBudgetTests.body(7 * Self.mib, fill: 9), options: o) == .created)
        #expect(target.objects.withLock { $0["wal/x"]?.0 } == [UInt8](repeating: 9, count: 7 * Self.mib))
        #expect(await target.budget.free == 16 * Self.mib)
    }

    @Test func aGateThatSaysNoWritesNothing() async throws {
        let dir = try Self.directory()
        defer { rmdir(dir) }
        let target = MemoryPartedTarget(partSize: 5 * Self.mib, capacity: 16 * Self.mib)
        var o = Self.options(spool: dir, size: 1000)
        o.gate = WriteGate { false }
        #expect(try await target.write("wal/x", from: BytesSource([UInt8](repeating: 1, count: 1000)), options: o) == .alreadyExists)
        #expect(target.objects.withLock { $0.isEmpty })
    }

    @Test func aSpoolFileReadsBackInSlicesAndStretches() throws {
        let dir = try Self.directory()
        defer { rmdir(dir) }
        let spool = try #require(SpoolFile(directory: dir))
        let bytes = (0..<(3 * Self.mib + 17)).map { UInt8(truncatingIfNeeded: $0 >> 3) }
        try spool.append(Array(bytes[..<1000]))
        try spool.append(Array(bytes[1000...]))
        #expect(spool.byteCount == bytes.count)
        var stretched: [UInt8] = []
        try spool.forEachStretch { stretched += $0 }
        #expect(stretched == bytes)
        #expect(Array(try spool.slice(at: 5, count: 10).readableBytesView) == Array(bytes[5..<15]))
        #expect(Array(try spool.slice(at: bytes.count - 3, count: 10).readableBytesView) == Array(bytes.suffix(3)))
        #expect(try spool.slice(at: bytes.count, count: 10).readableBytes == 0)
        let joined = JoinedBody(parts: [ByteBuffer(string: "ab"), spool, ByteBuffer(string: "yz")])
        #expect(joined.byteCount == bytes.count + 4)
        #expect(Array(try joined.slice(at: 0, count: 10).readableBytesView) == Array("ab".utf8))
        #expect(Array(try joined.slice(at: 2, count: 4).readableBytesView) == Array(bytes[0..<4]))
        #expect(Array(try joined.slice(at: bytes.count + 3, count: 4).readableBytesView) == Array("z".utf8))
        #expect(try md5Base64(joined) == md5Base64(ByteBuffer(bytes: Array("ab".utf8) + bytes + Array("yz".utf8))))
        #expect(try crc32cBase64(spool) == crc32cBase64(ByteBuffer(bytes: bytes)))
        // A file system with less free space than the spool keeps for PostgreSQL gets none.
        #expect(SpoolFile(directory: dir, keepingFree: .max) == nil)
    }
}

/// The upload memory budget: whole amounts, in order, never more than the capacity out at once.
@Suite struct ByteBudgetTests {
    @Test func waitersAreServedInOrderWithWholeAmounts() async throws {
        let budget = ByteBudget(capacity: 10)
        await budget.acquire(6)
        final class Order: Sendable {
            let m = Mutex<[Int]>([])
            func withLock<R>(_ f: (inout [Int]) -> R) -> R { m.withLock { f(&$0) } }
        }
        let order = Order()
        let big = Task { await budget.acquire(8); order.withLock { $0.append(8) } }
        // Each request is queued before the next is made (polled: a fixed sleep raced on a busy
        // machine, where the second task could run first).
        while await budget.waiting < 1 { try await Task.sleep(nanoseconds: 1_000_000) }
        let small = Task { await budget.acquire(2); order.withLock { $0.append(2) } }
        while await budget.waiting < 2 { try await Task.sleep(nanoseconds: 1_000_000) }
        // 4 are free: enough for the small request, but it queues behind the big one (no starvation).
        #expect(order.withLock { $0 } == [])
        await budget.release(6)
        await big.value
        await small.value
        #expect(order.withLock { $0 } == [8, 2])
        #expect(await budget.free == 0)
        await budget.release(8)
        await budget.release(2)
        #expect(await budget.free == 10)
        // More than the capacity is granted as the whole capacity (a single huge object still goes).
        await budget.acquire(50)
        #expect(await budget.free == 0)
        await budget.release(50)
        #expect(await budget.free == 10)
    }
}
