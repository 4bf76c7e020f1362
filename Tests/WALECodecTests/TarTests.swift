import Testing
import WALECore
@testable import WALECodec

final class Collector: TarSink {
    var entries: [TarEntry] = []
    var data: [String: [UInt8]] = [:]
    var ended = 0
    func begin(_ e: TarEntry) throws { entries.append(e) }
    func data(_ b: UnsafeRawBufferPointer) throws { data[entries.last!.name, default: []] += Array(b) }
    func end() throws { ended += 1 }
}

func tar(_ members: [(TarEntry, [UInt8])]) -> [UInt8] {
    var out: [UInt8] = []
    for (e, d) in members {
        out += TarFormat.header(for: e)
        out += d + TarFormat.padding(d.count)
    }
    return out + TarFormat.trailer(after: Int64(out.count))
}

@Suite struct TarTests {
    @Test func roundTripWithLongNamesLinksAndRoot() throws {
        let long = String(repeating: "d", count: 120) + "/" + String(repeating: "f", count: 90)
        let veryLong = String(repeating: "x/", count: 150) + "file"
        let members: [(TarEntry, [UInt8])] = [
            (TarEntry(name: "", kind: .directory, mode: 0o700, mtime: 1), []),
            (TarEntry(name: "base/1/1259", kind: .file, size: 5, mode: 0o600, mtime: 2), Array("hello".utf8)),
            (TarEntry(name: long, kind: .file, size: 3, mode: 0o640, mtime: 3), [1, 2, 3]),
            (TarEntry(name: veryLong, kind: .file, size: 0, mode: 0o600, mtime: 4), []),
            (TarEntry(name: "pg_wal", kind: .symlink(target: "/mnt/" + String(repeating: "w", count: 120)), mode: 0o777, mtime: 5), []),
        ]
        let bytes = tar(members)
        #expect(bytes.count % TarFormat.recordSize == 0)
        for feed in [1, 7, 512, 100_000] {
            let c = Collector()
            let r = TarReader(sink: c, name: "t")
            var i = 0
            while i < bytes.count {
                try r.feed(Array(bytes[i..<min(bytes.count, i + feed)]))
                i += feed
            }
            try r.finish()
            #expect(c.entries.map(\.name) == ["/", "base/1/1259", long, veryLong, "pg_wal"])
            #expect(c.entries[0].kind == .directory && c.entries[1].mode == 0o600 && c.entries[2].mtime == 3)
            #expect(c.data["base/1/1259"] == Array("hello".utf8) && c.data[long] == [1, 2, 3])
            #expect(c.entries[4].kind == .symlink(target: "/mnt/" + String(repeating: "w", count: 120)))
            #expect(c.ended == 5)
        }
    }

    @Test func rejectsDamage() throws {
        var bytes = tar([(TarEntry(name: "a", kind: .file, size: 600, mode: 0o600, mtime: 1), [UInt8](repeating: 7, count: 600))])
        let truncated = Array(bytes.prefix(700))
        let r1 = TarReader(sink: Collector(), name: "t")
        try r1.feed(truncated)
        #expect(throws: WALEError.self) { try r1.finish() }
        bytes[10] ^= 1  // inside the header: checksum mismatch
        #expect(throws: WALEError.self) { try TarReader(sink: Collector(), name: "t").feed(bytes) }
        #expect(throws: WALEError.self) { try TarReader(sink: Collector(), name: "t").finish() }  // no members at all
    }

    @Test func headerChecksumMatchesUstar() {
        let h = TarFormat.header(for: TarEntry(name: "global/pg_control", kind: .file, size: 8192, mode: 0o600, mtime: 1_700_000_000))
        #expect(h.count == 512)
        #expect(Array(h[257..<263]) == Array("ustar\0".utf8))
        var sum = 0
        for (i, b) in h.enumerated() { sum += (148..<156).contains(i) ? 32 : Int(b) }
        let stored = Int(String(decoding: h[148..<154], as: UTF8.self), radix: 8)
        #expect(stored == sum)
    }
}
