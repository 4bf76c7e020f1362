import WALECore

/// A partition's manifest object (`wal_e_manifest/part_N.json`), written by backup-push and read
/// by backup-fetch and verify: `{"partition": N, "files": [{"path", "size", "mode", "<algorithm>"}]}`,
/// each file's checksum under its algorithm's name (crc32c, or sha256 in older backups).
enum ManifestFormat {
    static func encode(_ entries: [ManifestEntry], partition: Int) -> [UInt8] {
        let json = JSON.object([
            ("partition", .int(Int64(partition))),
            ("files", .array(entries.map {
                .object([("path", .string($0.path)), ("size", .int($0.size)), ("mode", .int(Int64($0.mode))), ($0.algorithm.field, .string($0.checksum))])
            })),
        ])
        return Array(json.serialized().utf8)
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
            guard let p = f["path"]?.string, let s = f["size"]?.int, let mode = f["mode"]?.int.flatMap({ UInt32(exactly: $0) }),
                let (kind, h) = ManifestChecksum.allCases.lazy.compactMap({ k in f[k.field]?.string.map { (k, $0) } }).first
            else { throw WALEError(.corrupt, "the manifest \(key) has an entry without a path, size, mode or checksum") }
            out.append(ManifestEntry(path: p, size: s, mode: mode, checksum: h, algorithm: kind))
        }
        return out
    }
}
