import WALECore

/// A partition's manifest object (`wal_e_manifest/part_N.json`), written by backup-push and read
/// by backup-fetch and verify: `{"partition": N, "files": [{"path", "size", "mode", "<algorithm>"}]}`,
/// each file's checksum under its algorithm's name (crc32c, or sha256 in older backups).
enum ManifestFormat {
    static func encode(_ entries: [ManifestEntry], partition: Int) -> [UInt8] {
        let json = JSON.object([
            ("partition", .int(Int64(partition))),
            ("files", .array(entries.map(entryJSON))),
        ])
        return Array(json.serialized().utf8)
    }

    static func entryJSON(_ e: ManifestEntry) -> JSON {
        var kv: [(String, JSON)] = [("path", .string(e.path)), ("size", .int(e.size)), ("mode", .int(Int64(e.mode)))]
        if !e.checksum.isEmpty { kv.append((e.algorithm.field, .string(e.checksum))) }
        if let m = e.mtime { kv.append(("mtime", .int(m))) }
        return .object(kv)
    }

    /// One entry; nil when a required field is missing (`needsChecksum`: the checksum is one).
    static func entry(_ f: JSON, needsChecksum: Bool = true) -> ManifestEntry? {
        guard let p = f["path"]?.string, let s = f["size"]?.int, let mode = f["mode"]?.int.flatMap({ UInt32(exactly: $0) }) else { return nil }
        let sum = ManifestChecksum.allCases.lazy.compactMap({ k in f[k.field]?.string.map { (k, $0) } }).first
        if needsChecksum && sum == nil { return nil }
        return ManifestEntry(path: p, size: s, mode: mode, checksum: sum?.1 ?? "", algorithm: sum?.0 ?? .crc32c, mtime: f["mtime"]?.int)
    }

    /// Every field of every entry is required, and the partition number must be `partition`'s:
    /// a damaged manifest is refused, never half used.
    static func decode(_ bytes: [UInt8], key: String, partition: Int) throws -> [ManifestEntry] {
        guard let json = try? JSON.parse(String(decoding: bytes, as: UTF8.self)), let files = json["files"]?.array,
            json["partition"]?.int.map({ $0 == partition }) ?? true
        else {
            throw WALEError(.corrupt, "the manifest \(key) is not valid")
        }
        var out: [ManifestEntry] = []
        for f in files {
            guard let e = entry(f) else { throw WALEError(.corrupt, "the manifest \(key) has an entry without a path, size, mode or checksum") }
            out.append(e)
        }
        return out
    }
}
