#if canImport(Glibc)
import Glibc
#endif
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
        /// Draw the progress line on stderr.
        public var showProgress = false
        /// Rebuild an existing, stopped data directory (BackupFetch+Delta.swift).
        public var delta = false
        /// With `delta`: size, mode and modification time decide, not the checksum (DeltaJudge).
        public var deltaTrustMtime = false
        /// `WALE_RESTORE_DIRECT`.
        public var restoreWrites = RestoreWrites.off
        public init() {}
    }

    public let store: any ObjectStore
    public let prefix: StoragePrefix
    public let logger: Logger
    public let retry: RetryPolicy
    /// Bytes restored and partitions done: the progress line and the summary.
    public let progress = Progress(label: "backup-fetch")

    public init(store: any ObjectStore, prefix: StoragePrefix, logger: Logger, retry: RetryPolicy) {
        self.store = store
        self.prefix = prefix
        self.logger = logger
        self.retry = retry
    }

    var reader: BackupReader { BackupReader(store: store, prefix: prefix, logger: logger, retry: retry) }

    public func run(clusterDirectory: String, query: String, options: Options) async throws -> BackupName {
        if POSIX.lstat(clusterDirectory + "/postmaster.pid") != nil {
            throw WALEError(
                .user, "attempting to overwrite a live data directory", detail: "\(clusterDirectory)/postmaster.pid exists",
                hint: "stop PostgreSQL and restore into an empty directory")
        }
        let catalog = BackupCatalog(store: store, prefix: prefix)
        let listed = try await catalog.list()
        let backup = try catalog.resolve(query, in: listed)
        let sentinel = try await catalog.loadSentinel(backup)
        try POSIX.makeDirectories(clusterDirectory, mode: 0o700)
        guard let root = POSIX.realPath(clusterDirectory) else { throw WALEError(.io, "cannot resolve \(clusterDirectory)") }
        let locations = try prepareTablespaces(sentinel, root: root, options: options)
        logger.info("restoring \(backup.name) into \(root)", ["action": "backup-fetch", "backup": backup.name.description])
        // The directory's own pg_control (an earlier restore's) goes first: until the last step,
        // the directory must not look like a cluster PostgreSQL could start.
        func removeControlFile() {
            if unlink(root + "/global/pg_control") == 0 {
                logger.info("removed the global/pg_control already in \(root)", detail: "the backup's comes into place once every file is restored")
            }
        }
        if backup.name.isIncremental {
            let layers = try await catalog.chain(of: backup, in: listed)
            defer { progress.finish() }
            removeControlFile()
            let (files, bytes, parts) = try await restoreChain(layers, sentinel: sentinel, root: root, allowed: locations, options: options)
            try finishRestore(root: root, locations: locations, options: options)
            logger.info(
                "restored \(backup.name)",
                detail: "\(files) files, \(bytes) bytes from \(parts) partitions of \(layers.count) backups; every stored file matched its manifest; "
                    + progress.summary(read: "restored", stored: false))
            return backup.name
        }

        let partitions = try await reader.partitions(backup.name) { logger.warning("skipping a key that is not a tar partition", detail: $0) }
        progress.setTotal(bytes: sentinel.expandedSizeBytes)
        progress.setTotal(units: partitions.count)
        progress.start(show: options.showProgress)
        defer { progress.finish() }
        guard !partitions.isEmpty else { throw WALEError(.corrupt, "backup \(backup.name) has no tar partitions") }
        let manifests = try await !reader.manifestKeys(backup.name).isEmpty
        removeControlFile()
        if options.delta && !manifests {
            logger.warning(
                "backup \(backup.name) has no manifest: --delta rewrites every file", detail: "a WAL-E backup lists no checksums to compare with",
                hint: "files the backup does not have are still removed")
        }
        let judge = options.delta && manifests ? deltaJudge(root: root, sentinel: sentinel, options: options) : nil
        let aroundCache = writesAroundCache(options: options)
        async let walCleared = options.delta ? clearWALSegments(root: root) : 0
        let done = try await boundedConcurrently(partitions, width: options.poolSize) { p in
            try await fetchPartition(
                p, backup: backup.name, root: root, allowed: locations, manifest: manifests, delta: options.delta, judge: judge, aroundCache: aroundCache)
        }
        let files = done.reduce(0) { $0 + $1.files }
        let bytes = done.reduce(Int64(0)) { $0 + $1.bytes }
        if options.delta { try finishDelta(root: root, extracted: done, removedEarly: await walCleared) }
        try finishRestore(root: root, locations: locations, options: options)
        logger.info(
            "restored \(backup.name)", detail: "\(files) files, \(bytes) bytes from \(partitions.count) partitions"
                + (manifests ? "; every file matched the backup manifest" : "") + "; " + progress.summary(read: "restored", stored: false))
        return backup.name
    }

    /// Whether the large files are written around the page cache (`RestoreWrites`); said in the
    /// log when they are.
    func writesAroundCache(options: Options) -> Bool {
        guard options.restoreWrites == .on else { return false }
        logger.info("writing the large files around the page cache (O_DIRECT)", detail: "WALE_RESTORE_DIRECT=on")
        return true
    }

    /// Once every file is in: the tablespace map, recovery settings, a durable flush, and pg_control last.
    func finishRestore(root: String, locations: [String], options: Options) throws {
        fixTablespaceMap(root: root)
        if options.blindRestore { try allowInPlaceTablespaces(root: root) }
        if let recovery = options.recovery { try writeRecoverySettings(root: root, recovery) }
        try syncFileSystems([root] + locations)
        try placeControlFile(root: root)
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

    /// `judge`: a delta restore's, to compare the partition's files with the directory first (a
    /// partition with nothing to write is not downloaded); `kept`: files already found in place.
    func fetchPartition(
        _ p: (Int, String), backup: BackupName, root: String, allowed: [String], manifest: Bool, delta: Bool, judge: DeltaJudge? = nil,
        kept: Set<String> = [], layer: ChainLayer? = nil, manifestRead: [ManifestEntry]? = nil, aroundCache: Bool = false
    ) async throws -> ExtractedPartition {
        var expected = manifestRead
        var kept = kept
        let partition = prefix.url(forKey: p.1)
        if let judge {
            let m = try await reader.partitionManifest(backup, p.0)
            let pre = try deltaPrepass(files: m.files, others: m.others, judge: judge)
            if let untouched = pre.untouched {
                progress.unitDone()
                logger.info(
                    "left a partition unread", detail: "\(partition): all \(m.files.count) files already in place", ["action": "fetch-partition"])
                return untouched
            }
            expected = m.files
            kept = pre.kept
        } else if expected == nil && manifest {
            expected = try await reader.manifest(backup, p.0)
        }
        let sink = try await reader.read(partition: p.1, what: "the restore of \(p.1)") {
            SafeExtractor(
                root: root, allowedRoots: allowed, partition: partition, expected: expected, progress: progress, delta: delta, kept: kept,
                layer: layer, aroundCache: aroundCache)
        }
        progress.unitDone()
        try sink.checkComplete()
        logger.info(
            "restored a partition", detail: "\(partition): \(sink.files) files" + (delta ? " (\(sink.keptFiles) already in place)" : ""),
            ["action": "fetch-partition"])
        return ExtractedPartition(files: sink.files, bytes: sink.bytes, keptFiles: sink.keptFiles, keptBytes: sink.keptBytes, members: sink.members)
    }
}
