import WALECodec
import WALECore
import WALEStorage

/// `delete`: gathers the archive's state, plans (a pure value), logs the plan in WAL-E's words,
/// and deletes only when confirmed: each doomed backup's sentinel first, then its objects, then WAL.
public struct Delete: Sendable {
    public let store: any ObjectStore
    public let prefix: StoragePrefix
    public let logger: Logger
    public let now: Double

    public init(store: any ObjectStore, prefix: StoragePrefix, logger: Logger, now: Double) {
        self.store = store
        self.prefix = prefix
        self.logger = logger
        self.now = now
    }

    /// Keys per delete request (S3's DeleteObjects limit).
    public static let batchSize = 1000

    @discardableResult
    public func run(_ target: DeletionTarget, confirm: Bool, showProgress: Bool = false) async throws -> DeletionPlan {
        let state = try await gather(includeObsolete: target == .oldVersions)
        let plan = try DeletionPlanner(now: now).plan(target, state)
        logger.info(confirm ? "deleting data in the store" : "performing dry run of data deletion")
        for (m, d, h) in plan.notes { logger.info(m, detail: d, hint: h) }
        for b in plan.inProgress {
            logger.info("leaving an incomplete backup alone: it may still be in progress", detail: b.description)
        }
        let item = logger.named("wal_e.worker.base")
        for d in plan.deletions {
            item.info(
                "deleting \(d.kind.rawValue)", detail: "The key being deleted is \(prefix.url(forKey: d.key)).",
                hint: confirm ? nil : "This is only a dry run -- no actual data is being deleted")
        }
        if confirm {
            let progress = Progress(label: "delete", unitName: "objects")
            progress.setTotal(units: plan.deletions.count)
            progress.start(show: showProgress)
            defer { progress.finish() }
            var i = 0
            while i < plan.deletions.count {
                let batch = plan.deletions[i..<min(i + Self.batchSize, plan.deletions.count)].map(\.key)
                try await store.delete(batch)
                progress.unitDone(batch.count)
                i += Self.batchSize
            }
        }
        logger.info(
            confirm ? "deleted \(plan.deletions.count) objects" : "dry run: \(plan.deletions.count) objects would be deleted",
            detail: "backups deleted: \(plan.deletedBackups.map(\.description).joined(separator: ", ")); kept: "
                + plan.keptBackups.map(\.description).joined(separator: ", "),
            hint: confirm ? nil : "add --confirm to delete")
        return plan
    }

    /// One listing of the prefix, turned into the planner's view.
    public func gather(includeObsolete: Bool = false) async throws -> ArchiveState {
        let dir = prefix.baseBackupsDirectory
        var byName: [BackupName: (keys: [String], sentinel: ObjectInfo?, oldest: Double, newest: Double, marker: Bool)] = [:]
        for o in try await store.list(prefix: dir) {
            let rel = String(o.key.dropFirst(dir.count))
            let name: BackupName?
            var isSentinel = false
            if let completed = BackupName.completed(bySentinel: rel) {
                name = completed
                isSentinel = true
            } else if let slash = rel.firstIndex(of: "/") {
                name = BackupName(rel[..<slash])
            } else {
                name = nil
            }
            guard let name else {
                logger.warning("skipping non-qualifying key in 'delete'", detail: prefix.url(forKey: o.key))
                continue
            }
            var e = byName[name] ?? ([], nil, o.lastModified, o.lastModified, false)
            e.keys.append(o.key)
            if isSentinel { e.sentinel = o }
            if rel.hasSuffix("/" + BackupName.permanentMarkerName) { e.marker = true }
            e.oldest = min(e.oldest, o.lastModified)
            e.newest = max(e.newest, o.lastModified)
            byName[name] = e
        }
        let catalog = BackupCatalog(store: store, prefix: prefix)
        var backups: [ArchiveState.Backup] = []
        for (name, e) in byName {
            var start = e.oldest
            var parent: BackupName?
            // The marker object decides (backup-mark can remove it); the sentinel's `permanent`
            // only records what backup-push was told.
            let permanent = e.marker
            if let s = e.sentinel {
                start = s.lastModified
                let info = BackupInfo(name: name, sentinelKey: s.key, lastModified: "", lastModifiedEpoch: s.lastModified, sentinel: nil)
                do {
                    if let x = try await catalog.loadSentinel(info).extra {
                        if let t = parseISO8601(x.startTime) { start = t }
                        parent = x.incremental.flatMap { BackupName($0.parent) }
                    }
                } catch let e as WALEError where e.kind == .corrupt {
                    // Not trusted: the backup is ordered by its objects' times and keeps the WAL
                    // its name says it needs, as a WAL-E backup without our fields would.
                    logger.warning(e.message, detail: e.detail, hint: "delete orders this backup by its objects' times instead")
                } catch where (error as? WALEError)?.kind == .notFound {
                    // deleted while we listed
                }
            }
            backups.append(
                .init(
                    name: name, complete: e.sentinel != nil, startTime: start, lastActivity: e.newest, permanent: permanent,
                    keys: e.keys, sentinelKey: e.sentinel?.key, parent: parent))
        }

        var wal: [ArchiveState.WALObject] = []
        var ancestors: [TimelineID: Set<TimelineID>] = [:]
        for o in try await store.list(prefix: prefix.walDirectory) {
            let base = String(o.key.dropFirst(prefix.walDirectory.count))
            let suffix = Compression.allCases.map(\.suffix).first { base.hasSuffix($0) }
            let file = suffix.flatMap { WALFileName(String(base.dropLast($0.count))) }
            wal.append(.init(key: o.key, file: file))
            if case .history(let tli)? = file {
                let text = try await store.read(o.key) { src in
                    try await TransformedSource(src, AutoDecoder(name: o.key)).collect(limit: 4 << 20)
                }
                ancestors[tli] = ArchiveState.parseHistory(String(decoding: text, as: UTF8.self))
            } else if file == nil && !base.contains("/") {
                logger.warning("skipping non-qualifying key in 'delete'", detail: prefix.url(forKey: o.key))
            }
        }

        var obsolete: [String] = []
        if includeObsolete {
            for v in 0...4 {
                for d in ["basebackups_00\(v)/", "wal_00\(v)/"] {
                    obsolete += try await store.list(prefix: prefix.pathPrefix + d).map(\.key)
                }
            }
        }
        return ArchiveState(backups: backups, wal: wal, ancestors: ancestors, obsoleteKeys: obsolete)
    }

    /// Marks a backup permanent (or not): a marker object WAL-E never lists.
    public func mark(_ nameText: String, permanent: Bool) async throws {
        let catalog = BackupCatalog(store: store, prefix: prefix)
        let b = try catalog.resolve(nameText, in: try await catalog.list())
        let key = b.name.permanentMarkerKey(prefix)
        if permanent {
            _ = try await store.write(key, from: BytesSource(Array("{}".utf8)), options: WriteOptions(contentType: "application/json"))
            logger.info("marked \(b.name) permanent: no retention rule deletes it or the WAL it needs")
        } else {
            try await store.delete([key])
            logger.info("\(b.name) is no longer permanent")
        }
    }
}

extension DeletionPlan {
    /// delete --json: what was (or, in a dry run, would be) deleted and kept.
    public func json(confirmed: Bool, prefix: StoragePrefix) -> JSON {
        .object([
            ("confirmed", .bool(confirmed)),
            ("backups_deleted", .array(deletedBackups.map { .string($0.description) })),
            ("backups_kept", .array(keptBackups.map { .string($0.description) })),
            ("backups_in_progress", .array(inProgress.map { .string($0.description) })),
            ("object_count", .int(Int64(deletions.count))),
            ("objects", .array(deletions.map { .object([("kind", .string($0.kind.rawValue)), ("key", .string(prefix.url(forKey: $0.key)))]) })),
        ])
    }
}
