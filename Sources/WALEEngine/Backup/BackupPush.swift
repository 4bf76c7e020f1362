#if canImport(Glibc)
import Glibc
#endif
import CWALESupport
import Foundation
import WALECodec
import WALECore
import WALEPostgres
import WALEStorage

/// `backup-push PG_CLUSTER_DIRECTORY`: a non-exclusive base backup in WAL-E's format, streamed
/// disk → tar → compress → store, partitions in parallel, the sentinel written last.
public struct BackupPush: Sendable {
    public struct Options: Sendable {
        public var poolSize = 4
        public var rateLimit: Int64?
        public var whileOffline = false
        public var fast = false
        public var permanent = false
        /// Where partitions are cut (at most WAL-E's 1.5 GiB).
        public var partitionBytes = Partitioner.defaultTargetBytes
        /// How long to wait for the WAL the backup needs to reach the archive.
        public var archiveTimeout: Double = 300
        /// How the manifest checksums each file (`WALE_MANIFEST_CHECKSUM`).
        public var manifestChecksum = ManifestChecksum.crc32c
        /// Draw the progress line on stderr.
        public var showProgress = false
        /// `--incremental`, `--require-incremental` (BackupPush+Incremental.swift).
        public var incremental = IncrementalRequest.off
        /// `--from NAME`: the parent (default: the newest backup of this cluster).
        public var incrementalFrom: String?
        /// `--max-chain N`: incrementals over one full backup before a full one is taken.
        public var maxChain = 6
        /// How long to wait for WAL summarization to reach the backup's start.
        public var summaryTimeout: Double = 60
        public init() {}
    }

    /// Bytes read and stored, partitions done: the progress line and the summary.
    public let progress = Progress(label: "backup-push")
    public let store: any ObjectStore
    public let prefix: StoragePrefix
    public let compression: Compression
    public let logger: Logger
    public let env: [String: String]
    /// Encrypts partitions and manifests (gpg, WAL-E's `WALE_GPG_KEY_ID`, or native); clear by default.
    public var sealing = Sealing.clear

    public init(store: any ObjectStore, prefix: StoragePrefix, compression: Compression, logger: Logger, env: [String: String]) {
        self.store = store
        self.prefix = prefix
        self.compression = compression
        self.logger = logger
        self.env = env
    }

    /// Takes the backup and returns its name.
    public func run(clusterDirectory: String, options: Options) async throws -> BackupName {
        guard let real = POSIX.realPath(clusterDirectory), POSIX.isDirectory(real) else {
            throw WALEError(.user, "PG_CLUSTER_DIRECTORY \"\(clusterDirectory)\" is not a directory")
        }
        progress.start(show: options.showProgress)
        defer { progress.finish() }
        if options.whileOffline {
            return try await offline(real, options)
        }
        let session = try await PostgresSession.connect(env: env)
        do {
            let name = try await online(real, session, options)
            await session.close()
            return name
        } catch {
            // Closing the session makes the server abort the non-exclusive backup.
            await session.close()
            throw error
        }
    }

    private func online(_ dir: String, _ session: PostgresSession, _ options: Options) async throws -> BackupName {
        let server = try await session.serverInfo()
        guard POSIX.realPath(server.dataDirectory) == dir else {
            throw WALEError(
                .user, "\(dir) is not the data directory of the server wal-e connected to",
                detail: "the server at \(session.settings.endpoints.first.map { "\($0)" } ?? "?") uses \(server.dataDirectory)",
                hint: "point PGHOST/PGPORT at the cluster whose directory you back up, or use --while-offline for a stopped cluster")
        }
        let startTime = isoNow()
        let label = "freeze_start_" + isoNow(withOffset: true)
        logger.info(
            "starting a non-exclusive base backup", detail: "pg_backup_start('\(label)', \(options.fast))",
            hint: options.fast ? nil : "waiting for a spread checkpoint (up to checkpoint_timeout × checkpoint_completion_target); --fast asks for an immediate one")
        async let parent = lookUpParent(server: server, options: options)
        let start = try await session.startBackup(label: label, fast: options.fast, server: server)
        guard let seg = WALSegmentName(start.segmentName) else { throw WALEError(.internal, "bad start segment \(start.segmentName)") }
        let basis = try await incrementalBasis(session, server: server, start: start, options: options, parent: await parent)
        let name = BackupName(segment: seg, offsetText: start.offset, kind: basis == nil ? .full : .incremental)
        try await refuseExisting(name)
        logger.info(
            "base backup \(name) started",
            detail: "start LSN \(start.lsn) on timeline \(start.timeline)"
                + (basis.map { "; incremental over \($0.parent) (chain depth \($0.depth))" } ?? ""))

        try await put(name.versionKey(prefix), Array(server.versionString.utf8), contentType: "text/plain")
        let walker = ClusterWalker(root: dir, logger: logger)
        let changed = basis.map { IncrementalSource(walker: walker, parent: $0.parentFiles, mode: $0.mode) }
        let partitioner = Partitioner(walker: changed ?? walker, targetBytes: options.partitionBytes)
        let stored = basis == nil ? nil : StoredFiles()
        let count = try await uploadPartitions(partitioner, name: name, options: options, collect: stored)

        logger.info("stopping the base backup")
        let stop = try await session.stopBackup(timeline: start.timeline, server: server)
        // The label partition and the cluster manifest are stored while the archiver pushes the
        // stop segment; only the sentinel, which makes the backup listable, waits for it.
        async let archived: Void = waitForArchive(session, stop: stop, timeline: start.timeline, server: server, timeout: options.archiveTimeout)
        var labelFiles = [("backup_label", stop.backupLabel)]
        if let map = stop.tablespaceMap { labelFiles.append(("tablespace_map", map)) }
        try await uploadLabelPartition(
            labelFiles, number: count, name: name, checksum: options.manifestChecksum, owner: TarOwner.of(dir), collect: stored)
        var incremental: Sentinel.Incremental?
        if let basis, let changed, let stored {
            let files = stored.entries.filter { DeltaMember.target(ofMember: $0.path) == nil }.map { ClusterFile(entry: $0, source: .stored) }
                + changed.unstored
            try await writeSealed(
                ClusterManifestFormat.encode(backup: name, parent: basis.parent, files: files), key: name.clusterManifestKey(prefix))
            let modeName: String
            if case .block = basis.mode { modeName = "block" } else { modeName = "file" }
            incremental = .init(parent: basis.parent.description, depth: basis.depth, mode: modeName, fromLSN: basis.parentStartLSN.description)
            logger.info(
                "incremental over \(basis.parent): \(files.count - changed.unstored.count) files stored whole, \(changed.patchedFiles) patched "
                    + "(\(changed.changedBlocks) changed blocks), \(changed.unstored.count - changed.patchedFiles) unchanged",
                detail: "changes found by \(modeName == "block" ? "WAL summaries since \(basis.parentStartLSN)" : "size and modification time")")
        }
        try await archived

        let sentinel = Sentinel(
            stopSegment: stop.segmentName, stopOffset: stop.offset, expandedSizeBytes: partitioner.expandedSize,
            basePrefix: dir + "/", tablespaces: walker.tablespaces,
            extra: .init(
                startLSN: start.lsn.description, stopLSN: stop.lsn.description, timeline: start.timeline.value,
                systemIdentifier: server.systemIdentifier, postgresVersion: server.versionString,
                postgresVersionNumber: server.versionNumber, segmentSize: server.segmentSize.bytes,
                compression: compression.rawValue, fileCount: partitioner.fileCount + labelFiles.count,
                partitionCount: count + 1, startTime: startTime, stopTime: isoNow(), online: true, permanent: options.permanent,
                encryptionKeyIDs: sealing.keyIDs, incremental: incremental))
        if options.permanent { try await put(name.permanentMarkerKey(prefix), Array("{}".utf8), contentType: "application/json") }
        try await put(name.sentinelKey(prefix), Array(sentinel.storedText().utf8), contentType: "application/json")
        logger.info(
            "base backup \(name) complete", detail: "\(partitioner.fileCount) files, \(partitioner.expandedSize) bytes, \(count + 1) partitions; \(progress.summary())")
        return name
    }

    /// Waits until the WAL file holding the stop position is in the archive, reporting archiver
    /// failures as they happen instead of hanging silently (WAL-E issue #371).
    private func waitForArchive(
        _ session: PostgresSession, stop: BackupStop, timeline: TimelineID, server: ServerInfo, timeout: Double
    ) async throws {
        let segment = try await session.walFileName(stop.lsn, timeline: timeline, server: server)
        let state = try await session.archiverState()
        if server.inRecovery && state.mode != "off" && state.mode != "always" {
            // archive_mode = on archives only on the primary; PostgreSQL's own pg_backup_stop
            // does not wait on a standby either.
            logger.warning(
                "this standby does not archive WAL (archive_mode = \(state.mode)): backup-push does not wait for it",
                detail: "the backup needs WAL up to \(segment), which the primary archives once it has finished that segment",
                hint: "the backup can be restored once that segment is in the archive (pg_switch_wal() on the primary finishes it now); archive_mode = always on the standby makes backup-push wait")
            return
        }
        if state.mode == "off" {
            logger.warning(
                "WAL archiving is not enabled on this server", detail: "the backup needs WAL up to \(segment)",
                hint: "you must make sure that WAL reaches the archive by other means, or the backup cannot be restored")
            return
        }
        let keys = Compression.allCases.map { prefix.walKey(segment, suffix: $0.suffix) }
        let started = POSIX.monotonic()
        var lastReport = started
        var reportedFailure: String?
        // When PostgreSQL archived the segment but it is not here: since when (monotonic).
        var archivedElsewhereSince: Double?
        var reportedElsewhere = false
        logger.info("waiting for \(segment) to be archived")
        while true {
            for k in keys where try await store.info(k) != nil { return }
            let now = POSIX.monotonic()
            if now - started > timeout {
                throw WALEError(
                    .io, "the WAL this backup needs (\(segment)) was not archived within \(Int(timeout)) s",
                    detail: archivedElsewhereSince == nil
                        ? "the backup is incomplete and was not marked complete"
                        : "PostgreSQL's archive_command reported \(segment) archived, but it is not in \(prefix.raw); the backup is incomplete and was not marked complete",
                    hint: archivedElsewhereSince == nil
                        ? "check archive_command and the server log; --archive-timeout changes the wait"
                        : "archive_command must archive to the prefix backup-push writes to (`wal-e check` compares them); --archive-timeout changes the wait")
            }
            if now - lastReport > 1 {
                lastReport = now
                let s = try await session.archiverState()
                if let failed = s.lastFailedWAL, let at = s.lastFailedTime, failed + at != reportedFailure {
                    reportedFailure = failed + at
                    logger.warning(
                        "the archiver is failing while backup-push waits for \(segment)", detail: "last failure: \(failed) at \(at)",
                        hint: "archive_command must succeed before the backup can complete")
                }
                // archive_command succeeded for this segment (or a later one on its timeline) and
                // the segment is still not in this prefix a few seconds on: it archives elsewhere.
                if archivedElsewhereSince == nil, Self.archived(segment, last: s.lastArchivedWAL) { archivedElsewhereSince = now }
                if !reportedElsewhere, let since = archivedElsewhereSince, now - since >= Self.elsewhereGrace {
                    reportedElsewhere = true
                    logger.warning(
                        "PostgreSQL archived \(segment), but it is not in \(prefix.raw)",
                        detail: "pg_stat_archiver's last archived WAL is \(s.lastArchivedWAL ?? "?"); backup-push waits for the segment in its own prefix until --archive-timeout (\(Int(timeout)) s)",
                        hint: "archive_command archives somewhere else: point it at this prefix (`wal-e check` compares them)")
                }
            }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    /// Seconds a segment PostgreSQL reports archived may take to show in the store before
    /// backup-push says it is archived somewhere else.
    static let elsewhereGrace = 5.0

    /// Whether pg_stat_archiver's `last` (a segment, or a `.backup`/`.partial` file named after
    /// one) is `segment` or later on the same timeline.
    static func archived(_ segment: String, last: String?) -> Bool {
        guard let last, let done = WALSegmentName(last.prefix(24)), let wanted = WALSegmentName(segment) else { return false }
        return done.timeline == wanted.timeline && (done.log, done.seg) >= (wanted.log, wanted.seg)
    }

    private func offline(_ dir: String, _ options: Options) async throws -> BackupName {
        if POSIX.lstat(dir + "/postmaster.pid") != nil {
            throw WALEError(
                .user, "attempting to take an offline backup of a running cluster",
                detail: "\(dir)/postmaster.pid exists", hint: "stop PostgreSQL first, or leave out --while-offline")
        }
        if options.incremental == .required {
            throw WALEError(.user, "cannot take an incremental backup of a stopped cluster", hint: "incrementals are taken from a running server; leave out --while-offline")
        } else if options.incremental == .preferred {
            logger.warning("taking a full backup instead of an incremental: the cluster is stopped (--while-offline)")
        }
        let control = try ControlData.read(dataDirectory: dir, env: env)
        let seg = control.redo.segment(timeline: control.timeline, size: control.segmentSize)
        let name = BackupName(segment: seg, offsetText: BackupName.offsetText(control.redo.offset(in: control.segmentSize)))
        try await refuseExisting(name)
        let startTime = isoNow()
        try await put(name.versionKey(prefix), Array(control.versionLine.utf8), contentType: "text/plain")
        let walker = ClusterWalker(root: dir, logger: logger)
        let partitioner = Partitioner(walker: walker, targetBytes: options.partitionBytes)
        let count = try await uploadPartitions(partitioner, name: name, options: options)
        let sentinel = Sentinel(
            stopSegment: seg.description, stopOffset: name.offsetText, expandedSizeBytes: partitioner.expandedSize,
            basePrefix: dir + "/", tablespaces: walker.tablespaces,
            extra: .init(
                startLSN: control.redo.description, stopLSN: control.redo.description, timeline: control.timeline.value,
                systemIdentifier: control.systemIdentifier, postgresVersion: control.versionLine, postgresVersionNumber: 0,
                segmentSize: control.segmentSize.bytes, compression: compression.rawValue, fileCount: partitioner.fileCount,
                partitionCount: count, startTime: startTime, stopTime: isoNow(), online: false, permanent: options.permanent,
                encryptionKeyIDs: sealing.keyIDs))
        if options.permanent { try await put(name.permanentMarkerKey(prefix), Array("{}".utf8), contentType: "application/json") }
        try await put(name.sentinelKey(prefix), Array(sentinel.storedText().utf8), contentType: "application/json")
        logger.info("offline base backup \(name) complete", detail: "\(partitioner.fileCount) files, \(partitioner.expandedSize) bytes; \(progress.summary())")
        return name
    }

    private func refuseExisting(_ name: BackupName) async throws {
        if try await store.info(name.sentinelKey(prefix)) != nil {
            throw WALEError(.user, "a complete backup named \(name) already exists", hint: "nothing was changed; delete it first to replace it")
        }
    }

    /// Uploads partitions with at most `poolSize` in flight; returns how many there were.
    private func uploadPartitions(_ partitioner: Partitioner, name: BackupName, options: Options, collect: StoredFiles? = nil) async throws -> Int {
        let limiter = options.rateLimit.map { RateLimiter(bytesPerSecond: $0) }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            var number = 0
            var inFlight = 0
            while let members = try partitioner.nextPartition() {
                if inFlight >= max(1, options.poolSize) {
                    try await group.next()
                    inFlight -= 1
                }
                let n = number
                number += 1
                inFlight += 1
                group.addTask {
                    try await uploadPartition(members, number: n, name: name, limiter: limiter, checksum: options.manifestChecksum, collect: collect)
                    // Each partition's members, manifest and buffers leave holes in the one heap
                    // arena; without this, RSS grew by 5 MiB per 100,000 files (docs/design.md).
                    wale_release_free_memory()
                }
            }
            try await group.waitForAll()
            return number
        }
    }

    private func uploadPartition(
        _ members: [PlannedMember], number: Int, name: BackupName, limiter: RateLimiter?, checksum: ManifestChecksum, collect: StoredFiles?
    ) async throws {
        let key = name.partitionKey(prefix, number, suffix: compression.suffix)
        let tar = TarPartitionSource(members: members, limiter: limiter, logger: logger, checksum: checksum, progress: progress)
        let started = POSIX.monotonic()
        let stored = CountingSource(TransformedSource(tar, try sealing.seal(compression.encoder())))
        _ = try await store.write(key, from: stored, options: WriteOptions())
        progress.add(stored: stored.byteCount)
        progress.unitDone()
        try await writeManifest(tar.manifest, number: number, name: name, others: .init(members: members.map(\.entry)))
        collect?.add(tar.manifest)
        let bytes = members.reduce(Int64(0)) { $0 + $1.entry.size }
        logger.info(
            "finished uploading a partition", detail: "\(prefix.url(forKey: key)): \(members.count) members, \(bytes) bytes in \(String(format2: POSIX.monotonic() - started)) s",
            ["action": "push-partition", "partition": String(number)])
    }

    /// `owner`: the data directory's, so a partition extracted by hand (as root) gives files the
    /// server's user can read, as for every member walked from the cluster.
    private func uploadLabelPartition(
        _ files: [(String, String)], number: Int, name: BackupName, checksum: ManifestChecksum, owner: TarOwner, collect: StoredFiles? = nil
    ) async throws {
        var tar: [UInt8] = []
        var manifest: [ManifestEntry] = []
        let now = Int64(time(nil))
        for (file, text) in files {
            let data = Array(text.utf8)
            var entry = TarEntry(name: file, kind: .file, size: Int64(data.count), mode: 0o600, mtime: now)
            owner.apply(to: &entry)
            tar += TarFormat.header(for: entry)
            tar += data + TarFormat.padding(data.count)
            manifest.append(
                ManifestEntry(
                    path: file, size: Int64(data.count), mode: 0o600, checksum: FileChecksummer.checksum(data, checksum), algorithm: checksum,
                    mtime: now, mtimeNanos: 0))
        }
        tar += TarFormat.trailer(after: Int64(tar.count))
        let key = name.partitionKey(prefix, number, suffix: compression.suffix)
        _ = try await store.write(
            key, from: TransformedSource(BytesSource(tar), try sealing.seal(compression.encoder())), options: WriteOptions())
        try await writeManifest(manifest, number: number, name: name, others: .init())
        collect?.add(manifest)
    }

    private func writeManifest(_ entries: [ManifestEntry], number: Int, name: BackupName, others: ManifestFormat.PartitionOthers) async throws {
        try await writeSealed(ManifestFormat.encode(entries, partition: number, others: others), key: name.manifestKey(prefix, number))
    }

    /// Writes a manifest, encrypted as the partitions are: paths, sizes and checksums of the files
    /// are kept as secret as their contents.
    private func writeSealed(_ bytes: [UInt8], key: String) async throws {
        guard let encryptor = try sealing.encryptor() else {
            return try await put(key, bytes, contentType: "application/json")
        }
        let sealed = try await TransformedSource(BytesSource(bytes), encryptor).collect()
        try await put(key, sealed, contentType: sealing.contentType)
    }

    private func put(_ key: String, _ bytes: [UInt8], contentType: String) async throws {
        _ = try await store.write(key, from: BytesSource(bytes), options: WriteOptions(contentType: contentType))
    }
}

/// The manifest entries of every partition an incremental backup stored, gathered from the
/// partition uploads running in parallel for its cluster manifest.
final class StoredFiles: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [ManifestEntry] = []
    func add(_ e: [ManifestEntry]) { lock.withLock { list += e } }
    var entries: [ManifestEntry] { lock.withLock { list } }
}

/// Now as ISO 8601 UTC: `2026-11-21T04:28:04.577479` (with `+00:00` when `withOffset`).
func isoNow(withOffset: Bool = false) -> String {
    UTCTime(epochSeconds: POSIX.now()).isoNoZone + (withOffset ? "+00:00" : "")
}

extension String {
    init(format2 v: Double) {
        let cents = Int((v * 100).rounded())
        self = "\(cents / 100)." + (cents % 100 < 10 ? "0" : "") + "\(cents % 100)"
    }
}
