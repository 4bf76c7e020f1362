import CWALESupport
import WALECodec
import WALECore
import WALEStorage

/// Reads a stored backup's parts, for backup-fetch (which writes them out) and verify (which only
/// checks them): the partitions and their manifests, and one partition streamed through its codec
/// and tar parser into a sink. The key names themselves are `BackupName`'s.
public struct BackupReader: Sendable {
    public let store: any ObjectStore
    public let prefix: StoragePrefix
    public let logger: Logger
    public let retry: RetryPolicy

    public init(store: any ObjectStore, prefix: StoragePrefix, logger: Logger, retry: RetryPolicy) {
        self.store = store
        self.prefix = prefix
        self.logger = logger
        self.retry = retry
    }

    public static let partitionSuffixes = [".tar.lzo", ".tar.zst", ".tar.lz4"]

    /// (number, key) of every partition, numerically ordered (any padding; any of our codecs).
    /// Keys under `tar_partitions/` that are no partition are passed to `stray`.
    public func partitions(_ name: BackupName, stray: (String) -> Void = { _ in }) async throws -> [(Int, String)] {
        let dir = name.partitionsDirectory(prefix)
        var out: [(Int, String)] = []
        for o in try await store.list(prefix: dir) {
            let base = String(o.key.dropFirst(dir.count))
            guard base.hasPrefix("part_"), let dot = base.firstIndex(of: "."),
                let n = Int(base[base.index(base.startIndex, offsetBy: 5)..<dot]),
                Self.partitionSuffixes.contains(String(base[dot...]))
            else {
                stray(o.key)
                continue
            }
            out.append((n, o.key))
        }
        return out.sorted { $0.0 < $1.0 }
    }

    /// The keys under the backup's `wal_e_manifest/` (empty for WAL-E's backups).
    public func manifestKeys(_ name: BackupName) async throws -> [String] {
        try await store.list(prefix: name.manifestsDirectory(prefix)).map(\.key)
    }

    /// Partition `n`'s manifest: every regular file with its size and checksum.
    public func manifest(_ name: BackupName, _ n: Int) async throws -> [ManifestEntry] {
        try await partitionManifest(name, n).files
    }

    /// Partition `n`'s manifest with the directories and links it lists (delta restores).
    func partitionManifest(_ name: BackupName, _ n: Int) async throws -> (files: [ManifestEntry], others: ManifestFormat.PartitionOthers?) {
        let key = name.manifestKey(prefix, n)
        let bytes = try await readSmallObject(key, what: "the manifest of partition \(n)")
        return try ManifestFormat.decodeWithOthers(bytes, key: key, partition: n)
    }

    /// Streams the partition at `key` (decoded by whichever codec wrote it, gpg included) through
    /// the tar parser into a sink made fresh for every attempt; a transient failure (a reset, a
    /// download that failed its checksum) starts the partition again (the log says "retrying
    /// `what`"). Returns the last sink.
    public func read<S: TarSink>(partition key: String, what: String, makeSink: () throws -> S) async throws -> S {
        try await retry.run(logger: logger, what: what) { _ in
            let sink = try makeSink()
            let reader = TarReader(sink: sink, name: key)
            try await store.read(key) { src in
                let decoded = TransformedSource(src, AutoDecoder(name: key))
                while let chunk = try await decoded.next() { try reader.feed(chunk) }
                try reader.finish()
            }
            wale_release_free_memory()  // as in backup-push: holes left by the partition's state
            return sink
        }
    }
}
