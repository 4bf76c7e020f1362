#if canImport(Glibc)
import Glibc
#endif
import CWALESupport
import WALECodec
import WALECore
import WALEStorage

/// `backup-fetch PG_CLUSTER_DIRECTORY BACKUP_NAME|LATEST`: restore a base backup (WAL-E's or ours).
public struct BackupFetch: Sendable {
    public struct RecoverySettings: Sendable {
        public var restoreCommand: String
        public var targetTime: String?
        public var targetLSN: String?
        public var targetName: String?
        public var targetAction: String?
        public init(restoreCommand: String) { self.restoreCommand = restoreCommand }
    }

    public struct Options: Sendable {
        public var poolSize = 4
        public var blindRestore = false
        /// A JSON file path, or `SOURCE`.
        public var restoreSpec: String?
        public var recovery: RecoverySettings?
        public init() {}
    }

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

    static let partitionPattern = "part_"

    public func run(clusterDirectory: String, query: String, options: Options) async throws -> BackupName {
        if POSIX.lstat(clusterDirectory + "/postmaster.pid") != nil {
            throw WALEError(
                .user, "attempting to overwrite a live data directory", detail: "\(clusterDirectory)/postmaster.pid exists",
                hint: "stop PostgreSQL and restore into an empty directory")
        }
        let catalog = BackupCatalog(store: store, prefix: prefix)
        let backup = try catalog.resolve(query, in: try await catalog.list())
        let sentinel = try await catalog.loadSentinel(backup)
        try POSIX.makeDirectories(clusterDirectory, mode: 0o700)
        guard let root = POSIX.realPath(clusterDirectory) else { throw WALEError(.io, "cannot resolve \(clusterDirectory)") }
        let locations = try prepareTablespaces(sentinel, root: root, options: options)
        logger.info("restoring \(backup.name) into \(root)", ["action": "backup-fetch", "backup": backup.name.description])

        let partitions = try await listPartitions(backup.name)
        guard !partitions.isEmpty else { throw WALEError(.corrupt, "backup \(backup.name) has no tar partitions") }
        let manifests = try await hasManifest(backup.name)
        // The directory's own pg_control (an earlier restore's) goes first: until the last step
        // below, the directory must not look like a cluster PostgreSQL could start.
        if unlink(root + "/global/pg_control") == 0 {
            logger.info("removed the global/pg_control already in \(root)", detail: "the backup's comes into place once every file is restored")
        }
        var files = 0
        var bytes: Int64 = 0
        try await withThrowingTaskGroup(of: (Int, Int64).self) { group in
            var next = partitions.makeIterator()
            for _ in 0..<max(1, options.poolSize) {
                guard let p = next.next() else { break }
                group.addTask { try await fetchPartition(p, backup: backup.name, root: root, allowed: locations, manifest: manifests) }
            }
            while let (f, b) = try await group.next() {
                files += f
                bytes += b
                if let p = next.next() {
                    group.addTask { try await fetchPartition(p, backup: backup.name, root: root, allowed: locations, manifest: manifests) }
                }
            }
        }
        fixTablespaceMap(root: root)
        if options.blindRestore { try allowInPlaceTablespaces(root: root) }
        if let recovery = options.recovery { try writeRecoverySettings(root: root, recovery) }
        try syncFileSystems([root] + locations)
        try placeControlFile(root: root)
        logger.info(
            "restored \(backup.name)", detail: "\(files) files, \(bytes) bytes from \(partitions.count) partitions"
                + (manifests ? "; every file matched the backup manifest" : ""))
        return backup.name
    }

    /// The last step of a restore, once everything else is on disk: the held-back pg_control
    /// takes its name, and the rename is made durable.
    func placeControlFile(root: String) throws {
        let held = root + "/" + SafeExtractor.heldBackControlFile
        guard POSIX.lstat(held) != nil else {
            throw WALEError(
                .corrupt, "the backup holds no global/pg_control", detail: "restored into \(root)",
                hint: "the directory cannot be started; restore another backup")
        }
        if rename(held, root + "/global/pg_control") != 0 { throw POSIX.error("rename into place", held) }
        let dir = try POSIX.open(root + "/global", O_RDONLY | O_DIRECTORY, 0, what: "open")
        defer { close(dir) }
        if fsync(dir) != 0 { throw POSIX.error("fsync", root + "/global") }
    }

    /// (number, key) of every partition, numerically ordered (any padding; any of our codecs).
    func listPartitions(_ name: BackupName) async throws -> [(Int, String)] {
        let dir = name.directory(prefix) + "tar_partitions/"
        var out: [(Int, String)] = []
        for o in try await store.list(prefix: dir) {
            let base = String(o.key.dropFirst(dir.count))
            guard base.hasPrefix(Self.partitionPattern), let dot = base.firstIndex(of: "."),
                let n = Int(base[base.index(base.startIndex, offsetBy: 5)..<dot]),
                [".tar.lzo", ".tar.zst", ".tar.lz4"].contains(String(base[dot...]))
            else {
                logger.warning("skipping a key that is not a tar partition", detail: o.key)
                continue
            }
            out.append((n, o.key))
        }
        return out.sorted { $0.0 < $1.0 }
    }

    func hasManifest(_ name: BackupName) async throws -> Bool {
        try await !store.list(prefix: name.directory(prefix) + "wal_e_manifest/").isEmpty
    }

    func loadManifest(_ name: BackupName, _ n: Int) async throws -> [ManifestEntry] {
        let key = name.manifestKey(prefix, n)
        var bytes: [UInt8]
        do {
            bytes = try await store.read(key) { try await $0.collect(limit: 64 << 20) }
        } catch let e as WALEError where e.kind == .notFound {
            throw WALEError(.corrupt, "the manifest of partition \(n) is missing", detail: key)
        }
        if Compression.sniff(bytes) == .openPGP {  // a backup made with WALE_GPG_KEY_ID
            bytes = try await TransformedSource(BytesSource(bytes), try GPG.decryptor(name: key)).collect(limit: 64 << 20)
        }
        guard let json = try? JSON.parse(String(decoding: bytes, as: UTF8.self)), let files = json["files"]?.array else {
            throw WALEError(.corrupt, "the manifest \(key) is not valid")
        }
        // Each entry carries its checksum under its algorithm's name (crc32c; sha256 in backups
        // made before CRC-32C became the default, or with WALE_MANIFEST_CHECKSUM=sha256).
        return files.compactMap { f in
            guard let p = f["path"]?.string, let s = f["size"]?.int,
                let (kind, h) = ManifestChecksum.allCases.lazy.compactMap({ k in f[k.field]?.string.map { (k, $0) } }).first
            else { return nil }
            return ManifestEntry(path: p, size: s, mode: UInt32(f["mode"]?.int ?? 0), checksum: h, algorithm: kind)
        }
    }

    private func fetchPartition(
        _ p: (Int, String), backup: BackupName, root: String, allowed: [String], manifest: Bool
    ) async throws -> (Int, Int64) {
        let expected = manifest ? try await loadManifest(backup, p.0) : nil
        return try await retry.run(logger: logger, what: "the restore of \(p.1)") { _ in
            let sink = SafeExtractor(root: root, allowedRoots: allowed, partition: prefix.url(forKey: p.1), expected: expected)
            let reader = TarReader(sink: sink, name: p.1)
            try await store.read(p.1) { src in
                let decoded = TransformedSource(src, AutoDecoder(name: p.1))
                while let chunk = try await decoded.next() { try reader.feed(chunk) }
                try reader.finish()
            }
            try sink.checkComplete()
            wale_release_free_memory()  // as in backup-push: holes left by the partition's state
            logger.info("restored a partition", detail: "\(prefix.url(forKey: p.1)): \(sink.files) files", ["action": "fetch-partition"])
            return (sink.files, sink.bytes)
        }
    }
}
