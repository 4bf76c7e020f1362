import WALECodec
import WALECore
import WALEStorage

/// One regular file of the cluster an incremental backup restores to, and where its bytes are.
public struct ClusterFile: Sendable, Equatable {
    public enum Source: String, Sendable {
        /// Stored whole in this backup (its checksum is the final file's).
        case stored = "self"
        /// Unchanged since the parent: the parent's file, checksum inherited.
        case parent
        /// The parent's file with this backup's changed blocks written over it, cut or extended to
        /// `size` (no checksum of the final file: it was never read whole; nor has a `.parent`
        /// entry over such a file).
        case delta
    }
    public var entry: ManifestEntry
    public var source: Source

    public init(entry: ManifestEntry, source: Source) {
        self.entry = entry
        self.source = source
    }
}

/// `<backup>/wal_e_cluster_manifest.json` of an incremental backup: every regular file of the
/// cluster it restores to (path, size, mode, modification time, checksum when known) with its
/// source. A full backup's cluster is the union of its partition manifests.
enum ClusterManifestFormat {
    static func encode(backup: BackupName, parent: BackupName, files: [ClusterFile]) -> [UInt8] {
        // Entry by entry, as the partition manifests (no tree of the whole cluster in memory).
        var out = "{\"backup\": "
        out.reserveCapacity(128 + files.count * 170)
        JSON.quote(backup.description, into: &out)
        out += ", \"parent\": "
        JSON.quote(parent.description, into: &out)
        out += ", \"files\": "
        ManifestFormat.writeArray(files, into: &out) { f, o in
            guard case .object(var kv) = ManifestFormat.entryJSON(f.entry) else { return }
            kv.append(("from", .string(f.source.rawValue)))
            JSON.object(kv).write(into: &o)
        }
        out += "}"
        return Array(out.utf8)
    }

    static func decode(_ bytes: [UInt8], key: String, backup: BackupName) throws -> (parent: String, files: [ClusterFile]) {
        guard let json = try? JSON.parse(String(decoding: bytes, as: UTF8.self)), let files = json["files"]?.array,
            json["backup"]?.string == backup.description, let parent = json["parent"]?.string
        else { throw WALEError(.corrupt, "the cluster manifest \(key) is not valid") }
        var out: [ClusterFile] = []
        out.reserveCapacity(files.count)
        for f in files {
            guard let source = f["from"]?.string.flatMap(ClusterFile.Source.init(rawValue:)),
                let e = ManifestFormat.entry(f, needsChecksum: source == .stored)
            else { throw WALEError(.corrupt, "the cluster manifest \(key) has an entry without a path, size, mode, source or checksum") }
            out.append(ClusterFile(entry: e, source: source))
        }
        return (parent, out)
    }
}

/// Where every file of a restored chain (a full backup, then incrementals, oldest first) comes
/// from: the layer holding its base copy, then the layers whose changed blocks go over it.
public struct ChainPlan: Sendable {
    public let layers: [BackupName]
    /// Path → index of the layer whose whole copy is written.
    public let base: [String: Int]
    /// Path → indices of the layers whose changed blocks are written over the base, in order.
    public let deltas: [String: [Int]]
    /// The final cluster's files (the newest layer's view).
    public let final: [String: ManifestEntry]

    /// `views[i]`: layer i's cluster (layer 0 all `.stored`).
    public init(layers: [BackupName], views: [[ClusterFile]]) throws {
        var base: [String: Int] = [:]
        var deltas: [String: [Int]] = [:]
        var final: [String: ManifestEntry] = [:]
        for (i, view) in views.enumerated() {
            var nextBase: [String: Int] = [:]
            var nextDeltas: [String: [Int]] = [:]
            for f in view {
                let p = f.entry.path
                switch f.source {
                case .stored:
                    nextBase[p] = i
                case .parent, .delta:
                    guard let b = base[p] else {
                        throw WALEError(
                            .corrupt, "\(layers[i]) takes \(p) from its parent \(i > 0 ? layers[i - 1].description : "?"), which does not have it",
                            hint: "the chain is damaged; restore the parent full backup instead")
                    }
                    nextBase[p] = b
                    nextDeltas[p] = (deltas[p] ?? []) + (f.source == .delta ? [i] : [])
                }
                if i == views.count - 1 { final[p] = f.entry }
            }
            base = nextBase
            deltas = nextDeltas.filter { !$0.value.isEmpty }
        }
        self.layers = layers
        self.base = base
        self.deltas = deltas
        self.final = final
    }

    /// What layer `index` does with the regular file member `path` (a delta member names its target).
    public enum Action: Equatable, Sendable { case write, skip, patch }

    public func action(layer index: Int, file path: String) -> Action {
        if let target = DeltaMember.target(ofMember: path) {
            return deltas[target]?.contains(index) == true ? .patch : .skip
        }
        return base[path] == index ? .write : .skip
    }
}

extension BackupReader {
    /// A stored object of the backup's own (manifests), decrypted when the backup is encrypted.
    func readSmallObject(_ key: String, what: String, limit: Int = 64 << 20) async throws -> [UInt8] {
        var bytes: [UInt8]
        do {
            bytes = try await store.read(key) { try await $0.collect(limit: limit) }
        } catch let e as WALEError where e.kind == .notFound {
            throw WALEError(.corrupt, "\(what) is missing", detail: key)
        }
        switch Compression.sniff(bytes) {  // a backup made with WALE_GPG_KEY_ID or native encryption
        case .openPGP: bytes = try await TransformedSource(BytesSource(bytes), try GPG.decryptor(name: key)).collect(limit: limit)
        case .native: bytes = try await TransformedSource(BytesSource(bytes), NativeDecryptor(name: key)).collect(limit: limit)
        default: break
        }
        return bytes
    }

    /// Every regular file of the cluster `name` restores to: an incremental's cluster manifest, or
    /// a full backup's partition manifests together (nil for a backup without manifests: WAL-E's).
    public func clusterView(_ name: BackupName) async throws -> [ClusterFile]? {
        if name.isIncremental {
            let key = name.clusterManifestKey(prefix)
            // A million files take about 150 MB of manifest.
            let bytes = try await readSmallObject(key, what: "the cluster manifest of \(name)", limit: 1 << 30)
            return try ClusterManifestFormat.decode(bytes, key: key, backup: name).files
        }
        guard try await !manifestKeys(name).isEmpty else { return nil }
        // Read side by side: one after the other, an object store's latency per manifest adds up.
        let manifests = try await boundedConcurrently(try await partitions(name), width: 8) { try await self.manifest(name, $0.0) }
        return manifests.flatMap { $0.map { ClusterFile(entry: $0, source: .stored) } }
    }
}

extension BackupReader {
    /// The plan of a chain (oldest first): every layer's cluster view, combined.
    public func chainPlan(_ layers: [BackupName]) async throws -> ChainPlan {
        let views = try await boundedConcurrently(layers, width: 4) { l -> [ClusterFile] in
            guard let v = try await self.clusterView(l) else {
                throw WALEError(.corrupt, "\(l) has no manifest, so no incremental can be built on it")
            }
            return v
        }
        return try ChainPlan(layers: layers, views: views)
    }
}
