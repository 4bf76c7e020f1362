import Testing
import WALECodec
import WALECore
@testable import WALEEngine

@Suite struct ManifestTests {
    let entries = [
        ManifestEntry(path: "base/1/1234", size: 5, mode: 0o600, checksum: FileChecksummer.checksum(Array("hello".utf8), .crc32c), algorithm: .crc32c),
        ManifestEntry(path: "global/pg_control", size: 3, mode: 0o600, checksum: FileChecksummer.checksum([1, 2, 3], .sha256), algorithm: .sha256),
    ]

    /// Manifests are written entry by entry, not as one JSON tree: the text must be exactly the
    /// tree's serialization (older readers, and the seal, see the same bytes).
    @Test func streamedTextIsTheTreesText() throws {
        let odd = entries + [
            ManifestEntry(path: "base/1/a \"quoted\" \\ tab\t é", size: 0, mode: 0o644, checksum: "", algorithm: .crc32c, mtime: 7, mtimeNanos: 7_000_000_001),
        ]
        let others = ManifestFormat.PartitionOthers(directories: ["base", "base/1 x"], links: ["pg_tblspc/16384"])
        for o in [others, nil] {
            var kv: [(String, JSON)] = [("partition", .int(3)), ("files", .array(odd.map(ManifestFormat.entryJSON)))]
            if let o {
                kv.append(("directories", .array(o.directories.map { .string($0) })))
                kv.append(("links", .array(o.links.map { .string($0) })))
            }
            #expect(ManifestFormat.encode(odd, partition: 3, others: o) == ManifestFormat.seal(JSON.object(kv).serialized()))
        }
        let name = try #require(BackupName("base_000000010000000000000002_00000040"))
        let parent = try #require(BackupName("base_000000010000000000000001_00000040"))
        let files = odd.map { ClusterFile(entry: $0, source: .parent) }
        let tree = JSON.object([
            ("backup", .string(name.description)), ("parent", .string(parent.description)),
            ("files", .array(files.map { f in
                guard case .object(var kv) = ManifestFormat.entryJSON(f.entry) else { return .null }
                kv.append(("from", .string(f.source.rawValue)))
                return .object(kv)
            })),
        ])
        let text = ClusterManifestFormat.encode(backup: name, parent: parent, files: files)
        #expect(text == Array(tree.serialized().utf8))
        #expect(try ClusterManifestFormat.decode(text, key: "k", backup: name).files == files)
    }

    @Test func roundTripsAndRefusesDamage() throws {
        let bytes = ManifestFormat.encode(entries, partition: 7)
        #expect(try ManifestFormat.decode(bytes, key: "k", partition: 7) == entries)
        #expect(throws: WALEError.self) { try ManifestFormat.decode(bytes, key: "k", partition: 8) }  // another partition's
        let text = String(decoding: bytes, as: UTF8.self)
        for damaged in [text.replacingOccurrences("\"mode\"", "\"mude\""), text.replacingOccurrences("\"size\"", "\"sise\""), String(text.dropLast())] {
            #expect(throws: WALEError.self) { try ManifestFormat.decode(Array(damaged.utf8), key: "k", partition: 7) }
        }
    }

    @Test func aSealCoversEveryByte() throws {
        var e = entries
        e[0].mtime = 1_700_000_000
        e[0].mtimeNanos = 123_456_789
        let text = String(decoding: ManifestFormat.encode(e, partition: 2, others: .init(directories: ["base/1"])), as: UTF8.self)
        #expect(try ManifestFormat.decode(Array(text.utf8), key: "k", partition: 2) == e)
        // A digit of a modification time, a directory's name: valid JSON still, refused by the seal.
        for damaged in [text.replacingOccurrences("123456789", "123456788"), text.replacingOccurrences("\"base/1\"", "\"base/2\"")] {
            #expect(damaged != text)
            #expect(throws: WALEError.self) { try ManifestFormat.decodeWithOthers(Array(damaged.utf8), key: "k", partition: 2) }
        }
        // A manifest written before the seal is read as it is.
        let unsealed = String(text[..<text.range(of: ",\"manifest_sha256\"")!.lowerBound]) + "}"
        #expect(try ManifestFormat.decode(Array(unsealed.utf8), key: "k", partition: 2) == e)
    }

    @Test func listsDirectoriesAndLinksForDeltaRestores() throws {
        let members = [
            TarEntry(name: "./base/1/", kind: .directory, size: 0, mode: 0o700, mtime: 0),
            TarEntry(name: "base/1/1234", kind: .file, size: 5, mode: 0o600, mtime: 0),
            TarEntry(name: "pg_tblspc/16400", kind: .symlink(target: "/srv/ts"), size: 0, mode: 0o777, mtime: 0),
            TarEntry(name: "", kind: .directory, size: 0, mode: 0o700, mtime: 0),  // the root itself: not listed
        ]
        let others = ManifestFormat.PartitionOthers(members: members)
        #expect(others == ManifestFormat.PartitionOthers(directories: ["base/1"], links: ["pg_tblspc/16400"]))
        let bytes = ManifestFormat.encode(entries, partition: 3, others: others)
        let back = try ManifestFormat.decodeWithOthers(bytes, key: "k", partition: 3)
        #expect(back.files == entries && back.others == others)
        // A manifest written before they were listed: unknown, so a delta restore downloads the partition.
        #expect(try ManifestFormat.decodeWithOthers(ManifestFormat.encode(entries, partition: 3), key: "k", partition: 3).others == nil)
    }

    @Test func modificationTimeRuleNeedsTheFileModifiedBeforeTheBackupStarted() {
        let start = 1_000_000.5
        var e = ManifestEntry(path: "base/1/1", size: 8192, mode: 0o600, checksum: "", algorithm: .crc32c, mtime: 1_000_000, mtimeNanos: 300_000_000)
        // 0.2 s before the start, same size and time on disk: unchanged.
        #expect(e.unchangedSince(backupStart: start, size: 8192, seconds: 1_000_000, nanos: 300_000_000))
        #expect(!e.unchangedSince(backupStart: start, size: 8192, seconds: 1_000_000, nanos: 300_000_001))  // touched since
        #expect(!e.unchangedSince(backupStart: start, size: 16384, seconds: 1_000_000, nanos: 300_000_000))  // grew
        // Within the coarse-clock margin of the start: a later write could carry the same time.
        e.mtimeNanos = 460_000_000
        #expect(!e.unchangedSince(backupStart: start, size: 8192, seconds: 1_000_000, nanos: 460_000_000))
        // Whole seconds only (older manifests): a second before the start's second.
        e.mtimeNanos = nil
        #expect(!e.unchangedSince(backupStart: start, size: 8192, seconds: 1_000_000, nanos: 0))
        #expect(!e.unchangedSince(backupStart: 1_000_001.9, size: 8192, seconds: 1_000_000, nanos: 0))
        #expect(e.unchangedSince(backupStart: 1_000_002.0, size: 8192, seconds: 1_000_000, nanos: 123))
        e.mtime = nil
        #expect(!e.unchangedSince(backupStart: 2_000_000, size: 8192, seconds: 1_000_000, nanos: 0))  // no time recorded
        // Round trip of the nanoseconds.
        e = ManifestEntry(path: "a", size: 1, mode: 0o600, checksum: "00", algorithm: .crc32c, mtime: 5, mtimeNanos: 7)
        #expect(ManifestFormat.entry(ManifestFormat.entryJSON(e)) == e)
    }

    func feed(_ m: ManifestMatcher, _ path: String, _ data: [UInt8], mode: UInt32 = 0o600) throws {
        m.begin(file: path, mode: mode)
        data.withUnsafeBytes { m.update($0) }
        try m.end()
    }

    @Test func matcherChecksSizeModeAndChecksumAndCompleteness() throws {
        let m = ManifestMatcher(entries, partition: "p")
        try feed(m, "base/1/1234", Array("hello".utf8))
        #expect(throws: WALEError.self) { try feed(m, "global/pg_control", [1, 2, 4]) }  // checksum
        #expect(m.missing.isEmpty)
        #expect(throws: WALEError.self) { try feed(ManifestMatcher(entries, partition: "p"), "base/1/1234", Array("hell".utf8)) }  // size
        #expect(throws: WALEError.self) { try feed(ManifestMatcher(entries, partition: "p"), "base/1/1234", Array("hello".utf8), mode: 0o644) }  // mode
        let partial = ManifestMatcher(entries, partition: "p")
        try feed(partial, "base/1/1234", Array("hello".utf8))
        try feed(partial, "base/1/9999", [0])  // not listed: noted, not checked
        #expect(partial.unlisted == ["base/1/9999"] && partial.missing == ["global/pg_control"])
        #expect(throws: WALEError.self) { try partial.checkComplete() }
    }
}

extension String {
    fileprivate func replacingOccurrences(_ a: String, _ b: String) -> String {
        var out = ""
        var rest = self[...]
        while let r = rest.range(of: a) {
            out += rest[..<r.lowerBound] + b
            rest = rest[r.upperBound...]
        }
        return out + rest
    }
}
