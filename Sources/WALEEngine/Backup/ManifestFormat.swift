import WALECodec
import WALECore

/// A partition's manifest object (`wal_e_manifest/part_N.json`), written by backup-push and read
/// by backup-fetch and verify: `{"partition": N, "files": [{"path", "size", "mode", "<algorithm>"}]}`,
/// each file's checksum under its algorithm's name (crc32c, or sha256 in older backups). Since
/// delta restores skip partitions, also `"directories"` (the partition's directory members) and
/// `"links"` (its link members); older manifests have neither (nil: unknown).
enum ManifestFormat {
    static func encode(_ entries: [ManifestEntry], partition: Int, others: PartitionOthers? = nil) -> [UInt8] {
        // Written entry by entry, the same text as a JSON tree would give: a tree of a partition's
        // 6 144 entries held ~4 MB per partition in flight, and its holes stayed in the heap
        // (test_many_files: peak RSS grew with the number of files).
        var out = "{\"partition\": \(partition), \"files\": "
        out.reserveCapacity(64 + entries.count * 160)
        writeArray(entries, into: &out) { e, o in entryJSON(e).write(into: &o) }
        if let others {
            out += ", \"directories\": "
            writeArray(others.directories, into: &out) { d, o in JSON.quote(d, into: &o) }
            out += ", \"links\": "
            writeArray(others.links, into: &out) { l, o in JSON.quote(l, into: &o) }
        }
        out += "}"
        return seal(&out)
    }

    /// `[a, b, ...]` as `JSON.array` serializes it, each element written by `element`.
    static func writeArray<T>(_ items: [T], into out: inout String, _ element: (T, inout String) -> Void) {
        out += "["
        for (i, item) in items.enumerated() {
            if i > 0 { out += ", " }
            element(item, &out)
        }
        out += "]"
    }

    /// Manifests written since 1.2 end with the SHA-256 of everything before it (as the sentinel
    /// does): a byte flipped in a field nothing else checks (a modification time, the directory
    /// list) is found by verify and refused by restores.
    static let sealKey = "manifest_sha256"

    static func seal(_ text: String) -> [UInt8] {
        var text = text
        return seal(&text)
    }

    /// Seals `text` in place, then gives its bytes: one copy of a ~1 MB manifest, not four.
    static func seal(_ text: inout String) -> [UInt8] {
        SealedText.seal(&text, key: sealKey)
        return Array(text.utf8)
    }

    /// Whether `text` is intact: true when its seal matches or it has none (older manifests).
    static func sealHolds(_ text: String) -> Bool {
        switch SealedText.check(text, key: sealKey) {
        case .unsealed, .intact: true
        case .malformed, .altered: false
        }
    }

    /// The members of a partition that are not regular files, by normalised path.
    struct PartitionOthers: Equatable, Sendable {
        var directories: [String] = []
        var links: [String] = []

        init(directories: [String] = [], links: [String] = []) {
            self.directories = directories
            self.links = links
        }

        init(members: [TarEntry]) {
            for e in members {
                guard case .success(let parts) = SafeExtractor.memberComponents(e.name), !parts.isEmpty else { continue }
                switch e.kind {
                case .directory: directories.append(parts.joined(separator: "/"))
                case .symlink, .hardlink: links.append(parts.joined(separator: "/"))
                case .file, .other: break
                }
            }
        }
    }


    static func entryJSON(_ e: ManifestEntry) -> JSON {
        var kv: [(String, JSON)] = [("path", .string(e.path)), ("size", .int(e.size)), ("mode", .int(Int64(e.mode)))]
        if !e.checksum.isEmpty { kv.append((e.algorithm.field, .string(e.checksum))) }
        if let m = e.mtime { kv.append(("mtime", .int(m))) }
        if let n = e.mtimeNanos { kv.append(("mtime_ns", .int(n))) }
        return .object(kv)
    }

    /// One entry; nil when a required field is missing (`needsChecksum`: the checksum is one).
    static func entry(_ f: JSON, needsChecksum: Bool = true) -> ManifestEntry? {
        guard let p = f["path"]?.string, let s = f["size"]?.int, let mode = f["mode"]?.int.flatMap({ UInt32(exactly: $0) }) else { return nil }
        let sum = ManifestChecksum.allCases.lazy.compactMap({ k in f[k.field]?.string.map { (k, $0) } }).first
        if needsChecksum && sum == nil { return nil }
        return ManifestEntry(path: p, size: s, mode: mode, checksum: sum?.1 ?? "", algorithm: sum?.0 ?? .crc32c, mtime: f["mtime"]?.int,
            mtimeNanos: f["mtime_ns"]?.int)
    }

    /// Every field of every entry is required, and the partition number must be `partition`'s:
    /// a damaged manifest is refused, never half used.
    static func decode(_ bytes: [UInt8], key: String, partition: Int) throws -> [ManifestEntry] {
        try decodeWithOthers(bytes, key: key, partition: partition).files
    }

    /// The files, and the directories and links when the manifest lists them (nil when it predates them).
    static func decodeWithOthers(_ bytes: [UInt8], key: String, partition: Int) throws -> (files: [ManifestEntry], others: PartitionOthers?) {
        let text = String(decoding: bytes, as: UTF8.self)
        guard sealHolds(text), let json = try? JSON.parse(text), let files = json["files"]?.array,
            json["partition"]?.int.map({ $0 == partition }) ?? true
        else {
            throw WALEError(.corrupt, "the manifest \(key) is not valid")
        }
        var out: [ManifestEntry] = []
        for f in files {
            guard let e = entry(f) else { throw WALEError(.corrupt, "the manifest \(key) has an entry without a path, size, mode or checksum") }
            out.append(e)
        }
        var others: PartitionOthers?
        if let d = json["directories"]?.array, let l = json["links"]?.array {
            others = PartitionOthers(directories: d.compactMap(\.string), links: l.compactMap(\.string))
        }
        return (out, others)
    }
}
