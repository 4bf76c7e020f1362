import Synchronization
import Testing
import WALECore
@testable import WALEEngine

@Suite struct RelationFileTests {
    @Test func parsesEveryRelationPathAndNothingElse() {
        let main = RelationFile(path: "base/5/16384")
        #expect(main == RelationFile(tablespace: 1663, database: 5, relfilenode: 16384, fork: .main, segment: 0))
        #expect(RelationFile(path: "base/5/16384.2")?.segment == 2)
        #expect(RelationFile(path: "base/5/16384_vm")?.fork == .vm)
        #expect(RelationFile(path: "base/5/16384_fsm.1") == RelationFile(tablespace: 1663, database: 5, relfilenode: 16384, fork: .fsm, segment: 1))
        #expect(RelationFile(path: "global/1262") == RelationFile(tablespace: 1664, database: 0, relfilenode: 1262, fork: .main, segment: 0))
        #expect(
            RelationFile(path: "pg_tblspc/16390/PG_18_202506291/16391/16400_init")
                == RelationFile(tablespace: 16390, database: 16391, relfilenode: 16400, fork: .initialization, segment: 0))
        for other in [
            "base/5/pg_internal.init", "base/5/PG_VERSION", "global/pg_control", "base/5/t3_16384", "base/5/16384_xx", "base/5/16384.0",
            "base/5/016384", "pg_xact/0000", "base/5/16384.", "pg_tblspc/16390/16391/16400", "base/x/16384", "base/5/16384/1",
        ] {
            #expect(RelationFile(path: other) == nil, "\(other)")
        }
    }

    @Test func initForkPathStripsForkAndSegment() {
        #expect(RelationFile.initForkPath(of: "/d/base/5/16384.3") == "/d/base/5/16384_init")
        #expect(RelationFile.initForkPath(of: "/d/base/5/16384_vm") == "/d/base/5/16384_init")
        #expect(RelationFile.initForkPath(of: "/d_x/base/5/16384") == "/d_x/base/5/16384_init")
    }
}

@Suite struct BlockChangesTests {
    let file = RelationFile(tablespace: 1663, database: 5, relfilenode: 100, fork: .main, segment: 0)
    let key = BlockChanges.Key(tablespace: 1663, database: 5, relfilenode: 100, fork: 0)
    let bs = Int64(8192)

    @Test func unchangedIsAReferenceAndChangedBlocksAreStored() {
        var c = BlockChanges()
        #expect(c.method(for: file, size: 100 * bs, parentSize: 100 * bs, unlogged: false) == .reference)
        c.add(key, limit: nil, blocks: [7, 3, 3])
        c.add(key, limit: nil, blocks: [50])
        #expect(c.method(for: file, size: 100 * bs, parentSize: 100 * bs, unlogged: false) == .delta([3, 7, 50]))
        // Grown since the parent: the new blocks are stored whether or not a summary lists them.
        #expect(c.method(for: file, size: 103 * bs, parentSize: 100 * bs, unlogged: false) == .delta([3, 7, 50, 100, 101, 102]))
        // Shorter than the parent: the final length cuts, no block past it is stored.
        #expect(c.method(for: file, size: 40 * bs, parentSize: 100 * bs, unlogged: false) == .delta([3, 7]))
    }

    @Test func truncationLimitsWhatComesFromTheParent() {
        var c = BlockChanges()
        c.add(key, limit: 10, blocks: [2])
        // Truncated to 10 blocks, then grown back to 12: blocks 10 and 11 are not the parent's.
        #expect(c.method(for: file, size: 12 * bs, parentSize: 100 * bs, unlogged: false) == .delta([2, 10, 11]))
        var dropped = BlockChanges()
        dropped.add(key, limit: 0, blocks: [])
        #expect(dropped.method(for: file, size: 12 * bs, parentSize: 12 * bs, unlogged: false) == .whole)
        // The limit is relative to each 1 GiB segment: segment 1 of a relation truncated inside segment 1.
        var c2 = BlockChanges()
        c2.add(key, limit: 131_072 + 5, blocks: [131_072 + 1, 3])
        var seg1 = file
        seg1.segment = 1
        #expect(c2.method(for: seg1, size: 8 * bs, parentSize: 100 * bs, unlogged: false) == .delta([1, 5, 6, 7]))
        // A limit at or below the segment's start: the whole segment is new.
        var c3 = BlockChanges()
        c3.add(key, limit: 131_072, blocks: [])
        #expect(c3.method(for: seg1, size: 8 * bs, parentSize: 8 * bs, unlogged: false) == .whole)
        #expect(c3.method(for: file, size: 8 * bs, parentSize: 8 * bs, unlogged: false) == .reference)
    }

    @Test func wholeWhenSummariesCannotBeTrusted() {
        var c = BlockChanges()
        #expect(c.method(for: file, size: 8 * bs, parentSize: nil, unlogged: false) == .whole)  // new file
        #expect(c.method(for: file, size: 8 * bs, parentSize: 8 * bs, unlogged: true) == .whole)  // unlogged
        var fsm = file
        fsm.fork = .fsm
        #expect(c.method(for: fsm, size: 8 * bs, parentSize: 8 * bs, unlogged: false) == .whole)  // FSM not WAL-logged
        #expect(c.method(for: file, size: 8 * bs + 1, parentSize: 8 * bs, unlogged: false) == .whole)  // not whole blocks
        #expect(c.method(for: file, size: 0, parentSize: 0, unlogged: false) == .whole)
        c.add(.init(tablespace: 1663, database: 5, relfilenode: 0, fork: 0), limit: nil, blocks: [])  // database created
        #expect(c.createdDatabases.contains([1663, 5]))
        #expect(c.method(for: file, size: 8 * bs, parentSize: 8 * bs, unlogged: false) == .whole)
        var most = BlockChanges()
        most.add(key, limit: nil, blocks: Array(0..<10))
        #expect(most.method(for: file, size: 10 * bs, parentSize: 10 * bs, unlogged: false) == .whole)  // > 90 %
    }
}

@Suite struct DeltaMemberTests {
    @Test func namesRoundTrip() {
        #expect(DeltaMember.memberName(for: "base/5/16384.1") == "base/5/INCREMENTAL.16384.1")
        #expect(DeltaMember.target(ofMember: "base/5/INCREMENTAL.16384.1") == "base/5/16384.1")
        #expect(DeltaMember.target(ofMember: "base/5/16384") == nil)
        #expect(DeltaMember.target(ofMember: "base/5/INCREMENTAL.") == nil)
    }

    func member(_ blocks: [UInt32], finalSize: Int64) -> [UInt8] {
        var out = DeltaMember.header(finalSize: finalSize, blocks: blocks)
        for b in blocks { out += [UInt8](repeating: UInt8(truncatingIfNeeded: b), count: 8192) }
        return out
    }

    /// Feeds `bytes` in pieces of `step` and collects the writes.
    func parse(_ bytes: [UInt8], step: Int) throws -> (DeltaMember.Parser, [Int64: [UInt8]]) {
        var p = DeltaMember.Parser(name: "m")
        var writes: [Int64: [UInt8]] = [:]
        var i = 0
        while i < bytes.count {
            let piece = Array(bytes[i..<min(i + step, bytes.count)])
            try piece.withUnsafeBytes { b in
                try p.feed(b) { off, data in
                    let blockStart = off - off % 8192
                    writes[blockStart, default: []] += Array(data)
                }
            }
            i += step
        }
        return (p, writes)
    }

    @Test func parsesInAnyPieceSize() throws {
        let bytes = member([1, 4, 9], finalSize: 12 * 8192)
        for step in [7, 20, 4096, 8192, 100_000] {
            let (p, writes) = try parse(bytes, step: step)
            try p.finish()
            #expect(p.finalSize.map { $0 == 12 * 8192 } == true)
            #expect(p.blocks == [1, 4, 9])
            #expect(writes.keys.sorted() == [8192, 4 * 8192, 9 * 8192])
            #expect(writes[4 * 8192] == [UInt8](repeating: 4, count: 8192))
        }
    }

    @Test func refusesDamage() throws {
        var bad = member([1, 4], finalSize: 12 * 8192)
        bad[0] = UInt8(ascii: "X")
        #expect(throws: WALEError.self) { try parse(bad, step: 4096) }
        #expect(throws: WALEError.self) { try parse(member([4, 1], finalSize: 12 * 8192), step: 4096) }  // not ascending
        #expect(throws: WALEError.self) { try parse(member([1, 12], finalSize: 12 * 8192), step: 4096) }  // past the end
        let truncated = Array(member([1, 4], finalSize: 12 * 8192).dropLast(10))
        let (p, _) = try parse(truncated, step: 4096)
        #expect(throws: WALEError.self) { try p.finish() }
        #expect(throws: WALEError.self) { try parse(member([1], finalSize: 12 * 8192) + [0], step: 4096) }  // extra data
    }
}

@Suite struct ChainPlanTests {
    func e(_ p: String, _ size: Int64 = 8192, _ sum: String = "00000000") -> ManifestEntry {
        ManifestEntry(path: p, size: size, mode: 0o600, checksum: sum, algorithm: .crc32c)
    }
    let names = ["base_000000010000000000000002_00000040", "incr_000000010000000000000004_00000040", "incr_000000010000000000000006_00000040"]
        .map { BackupName($0)! }

    /// A full backup of a, b, c, gone; then c stored again, new added, b patched; then a and b
    /// patched (b cut to 4096 bytes).
    func threeLayers() throws -> ChainPlan {
        let full = ["a", "b", "c", "gone"].map { ClusterFile(entry: e($0), source: .stored) }
        let inc1 = [
            ClusterFile(entry: e("a"), source: .parent), ClusterFile(entry: e("b"), source: .delta),
            ClusterFile(entry: e("c"), source: .stored), ClusterFile(entry: e("new"), source: .stored),
        ]
        let inc2 = [
            ClusterFile(entry: e("a"), source: .delta), ClusterFile(entry: e("b", 4096, ""), source: .delta),
            ClusterFile(entry: e("c"), source: .parent), ClusterFile(entry: e("new"), source: .parent),
        ]
        return try ChainPlan(layers: names, views: [full, inc1, inc2])
    }

    @Test func eachFileComesFromTheNewestWholeCopyThenLaterPatches() throws {
        let plan = try threeLayers()
        #expect(plan.base == ["a": 0, "b": 0, "c": 1, "new": 1])
        #expect(plan.deltas == ["a": [2], "b": [1, 2]])
        #expect(plan.final["b"]?.size == 4096)
        #expect(plan.final["gone"] == nil)
        #expect(plan.action(layer: 0, file: "a") == .write)
        #expect(plan.action(layer: 0, file: "c") == .skip)
        #expect(plan.action(layer: 0, file: "gone") == .skip)
        #expect(plan.action(layer: 1, file: "INCREMENTAL.b") == .patch)
        #expect(plan.action(layer: 2, file: "INCREMENTAL.b") == .patch)
        #expect(plan.action(layer: 1, file: "INCREMENTAL.a") == .skip)
        #expect(plan.action(layer: 1, file: "c") == .write)
    }

    /// Each patching partition waits for exactly the partitions that write its files before it,
    /// and no more; run through the pool in the schedule's order, nothing stalls (width 1 too).
    @Test func patchingPartitionsWaitOnlyForTheWritersOfTheirFiles() async throws {
        let plan = try threeLayers()
        func job(_ layer: Int, _ n: Int, _ paths: [String]) -> ChainJob {
            ChainJob(layer: layer, partition: (n, "\(layer)/\(n)"), files: paths.map { e($0) }, others: nil)
        }
        let jobs = [
            job(2, 0, ["INCREMENTAL.a", "INCREMENTAL.b"]), job(1, 0, ["INCREMENTAL.b"]), job(1, 1, ["c", "new"]),
            job(0, 0, ["a", "b"]), job(0, 1, ["c", "gone"]), job(0, 2, ["unrelated"]),
        ]
        let (order, waitsFor) = ChainJob.schedule(jobs, plan: plan)
        #expect(order.map(\.partition.1) == ["1/1", "0/0", "0/1", "0/2", "1/0", "2/0"])
        // b's patch in layer 1 waits for b's whole copy (0/0); layer 2's patches of a and b wait
        // for that and for layer 1's patch of b; nothing waits for 0/1, 0/2 or 1/1.
        #expect(waitsFor == [[], [], [], [], [1], [1, 4]])
        for width in [1, 2, 6] {
            let completion = JobCompletion()
            let log = Mutex<[Int]>([])
            _ = try await boundedConcurrently(Array(order.indices), width: width) { k in
                defer { completion.ended(k) }
                await completion.wait(for: waitsFor[k])
                log.withLock { ran in
                    #expect(waitsFor[k].allSatisfy(ran.contains), "job \(k) ran before what it waits for")
                    ran.append(k)
                }
            }
            #expect(log.withLock { $0.count } == order.count)
        }
    }

    @Test func aFileTakenFromAParentThatLacksItIsRefused() {
        let full = [ClusterFile(entry: e("a"), source: .stored)]
        let inc = [ClusterFile(entry: e("b"), source: .parent)]
        #expect(throws: WALEError.self) { try ChainPlan(layers: Array(names.prefix(2)), views: [full, inc]) }
    }

    @Test func clusterManifestRoundTrips() throws {
        let files = [
            ClusterFile(entry: ManifestEntry(path: "a", size: 8192, mode: 0o600, checksum: "0a0b0c0d", algorithm: .crc32c, mtime: 17), source: .stored),
            ClusterFile(entry: ManifestEntry(path: "b", size: 8192, mode: 0o600, checksum: "", algorithm: .crc32c, mtime: 18), source: .delta),
            ClusterFile(entry: ManifestEntry(path: "c", size: 0, mode: 0o600, checksum: "", algorithm: .crc32c, mtime: nil), source: .parent),
        ]
        let bytes = ClusterManifestFormat.encode(backup: names[1], parent: names[0], files: files)
        let back = try ClusterManifestFormat.decode(bytes, key: "k", backup: names[1])
        #expect(back.parent == names[0].description)
        #expect(back.files == files)
        #expect(throws: WALEError.self) { try ClusterManifestFormat.decode(bytes, key: "k", backup: names[2]) }  // another backup's
        let text = String(decoding: bytes, as: UTF8.self).split(separator: "\"self\"", omittingEmptySubsequences: false)
            .joined(separator: "\"elsewhere\"")
        #expect(text.contains("elsewhere"))
        #expect(throws: WALEError.self) { try ClusterManifestFormat.decode(Array(text.utf8), key: "k", backup: names[1]) }
    }
}
