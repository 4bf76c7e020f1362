import WALECore
import WALEStorage

/// A complete backup found in storage (its sentinel exists).
public struct BackupInfo: Sendable {
    public var name: BackupName
    public var sentinelKey: String
    /// `last_modified` as WAL-E prints it for this backend.
    public var lastModified: String
    public var lastModifiedEpoch: Double
    public var sentinel: Sentinel?
    /// Its permanent marker (`backup-mark`) was in the same listing.
    public var permanent = false

    public init(name: BackupName, sentinelKey: String, lastModified: String, lastModifiedEpoch: Double, sentinel: Sentinel?) {
        self.name = name
        self.sentinelKey = sentinelKey
        self.lastModified = lastModified
        self.lastModifiedEpoch = lastModifiedEpoch
        self.sentinel = sentinel
    }
}

/// Finds backups the way WAL-E does: a key counts only if it sits directly under
/// `basebackups_005/` and is named `base_<seg>_<offset>_backup_stop_sentinel.json`.
public struct BackupCatalog: Sendable {
    public let store: any ObjectStore
    public let prefix: StoragePrefix

    public init(store: any ObjectStore, prefix: StoragePrefix) {
        self.store = store
        self.prefix = prefix
    }


    /// Complete backups in listing (key) order.
    public func list() async throws -> [BackupInfo] {
        let dir = prefix.baseBackupsDirectory
        var out: [BackupInfo] = []
        var marked: Set<String> = []
        for o in try await store.list(prefix: dir) {
            let rel = o.key.dropFirst(dir.count)
            if rel.hasSuffix("/" + BackupName.permanentMarkerName) { marked.insert(String(rel.prefix { $0 != "/" })) }
            guard let name = BackupName.completed(bySentinel: rel) else { continue }
            out.append(
                BackupInfo(
                    name: name, sentinelKey: o.key,
                    lastModified: prefix.scheme == .s3 ? (o.lastModifiedText ?? formatLastModified(o.lastModified)) : formatLastModified(o.lastModified),
                    lastModifiedEpoch: o.lastModified, sentinel: nil))
        }
        for i in out.indices { out[i].permanent = marked.contains(out[i].name.description) }
        return out
    }

    /// WAL-E's LATEST: the greatest last-modified time; on ties the later one in listing order.
    public static func latest(_ backups: [BackupInfo]) -> BackupInfo? {
        var best: BackupInfo?
        for b in backups where best == nil || b.lastModifiedEpoch >= best!.lastModifiedEpoch { best = b }
        return best
    }

    /// `LATEST` or an exact backup name; nil when nothing matches (backup-list then prints only
    /// its header, as WAL-E does). A query that is neither is an error.
    public func find(_ query: String, in backups: [BackupInfo]) throws -> BackupInfo? {
        if query == "LATEST" { return Self.latest(backups) }
        guard BackupName(query) != nil else {
            throw WALEError(.user, "invalid backup query submitted", detail: "query was \"\(query)\"", hint: "use LATEST or a name like base_000000010000000000000002_00000040")
        }
        return backups.first { $0.name.description == query }
    }

    /// `LATEST` or an exact backup name, which must exist (backup-fetch).
    public func resolve(_ query: String, in backups: [BackupInfo]) throws -> BackupInfo {
        guard let b = try find(query, in: backups) else {
            throw WALEError(
                .user, "no backups found for fetching", detail: query == "LATEST" ? nil : "no complete backup named \(query) under \(prefix.raw)",
                hint: query == "LATEST" ? "backup-list shows what the prefix \(prefix.raw) holds" : nil)
        }
        return b
    }

    /// The backups `target` is built on, oldest (the full one) first, ending with `target`.
    public func chain(of target: BackupInfo, in all: [BackupInfo]) async throws -> [BackupInfo] {
        var out = [target]
        var current = target
        while current.name.isIncremental {
            let s = try await loadSentinel(current)
            guard let parentName = s.extra?.incremental?.parent else {
                throw WALEError(.corrupt, "the sentinel of \(current.name) does not name its parent", hint: "restore a full backup instead")
            }
            guard let parent = all.first(where: { $0.name.description == parentName }) else {
                throw WALEError(
                    .corrupt, "\(current.name) is built on \(parentName), which is not in the archive",
                    hint: "an incremental backup cannot be restored without every backup of its chain; restore a full backup instead")
            }
            guard out.count <= 1000 else { throw WALEError(.corrupt, "the chain of \(target.name) loops") }
            out.append(parent)
            current = parent
        }
        return out.reversed()
    }

    public func loadSentinel(_ b: BackupInfo) async throws -> Sentinel {
        let bytes = try await store.read(b.sentinelKey) { try await $0.collect(limit: 16 << 20) }
        return try Sentinel.parse(stored: bytes, key: b.sentinelKey)
    }

    /// The backend's `last_modified` rendering (WAL-E prints the raw value its SDK returns).
    func formatLastModified(_ epoch: Double) -> String {
        let t = UTCTime(epochSeconds: epoch)
        switch prefix.scheme {
        case .file:
            // datetime.utcfromtimestamp(mtime).isoformat(): microseconds omitted when zero.
            return t.microsecond == 0 ? String(t.isoNoZone.dropLast(7)) : t.isoNoZone
        case .s3:
            let ms = t.microsecond / 1000
            return String(t.isoNoZone.dropLast(7)) + "." + String(repeating: "0", count: 3 - String(ms).count) + String(ms) + "Z"
        case .swift:
            return t.isoNoZone
        case .gs, .wabs:
            let base = String(t.isoNoZone.dropLast(7)).replacingFirstT()
            return (t.microsecond == 0 ? base : base + "." + String(t.isoNoZone.suffix(6))) + "+00:00"
        }
    }
}

extension String {
    fileprivate func replacingFirstT() -> String {
        guard let i = firstIndex(of: "T") else { return self }
        var s = self
        s.replaceSubrange(i...i, with: " ")
        return s
    }
}

/// backup-list's output: WAL-E's tab-separated, CRLF-terminated table, or JSON.
public enum BackupListFormat {
    public static let columns = [
        "name", "last_modified", "expanded_size_bytes", "wal_segment_backup_start", "wal_segment_offset_backup_start",
        "wal_segment_backup_stop", "wal_segment_offset_backup_stop",
    ]

    public static func header() -> String { row(columns) }

    public static func row(_ b: BackupInfo, detail: Bool) -> String {
        let s = detail ? b.sentinel : nil
        return row([
            b.name.description, b.lastModified, s.map { String($0.expandedSizeBytes) } ?? "", b.name.segment.description,
            b.name.offsetText, s?.stopSegment ?? "", s?.stopOffset ?? "",
        ])
    }

    /// Python's csv writer, excel-tab dialect: minimal quoting, `\r\n` line ends.
    static func row(_ fields: [String]) -> String {
        fields.map { f -> String in
            guard f.contains(where: { $0 == "\t" || $0 == "\"" || $0 == "\r" || $0 == "\n" }) else { return f }
            var q = "\""
            for c in f { q += c == "\"" ? "\"\"" : String(c) }
            return q + "\""
        }.joined(separator: "\t") + "\r\n"
    }

    public static func json(_ backups: [BackupInfo]) -> String {
        let items: [JSON] = backups.map { b in
            var kv: [(String, JSON)] = [
                ("name", .string(b.name.description)), ("last_modified", .string(b.lastModified)),
                ("wal_segment_backup_start", .string(b.name.segment.description)),
                ("wal_segment_offset_backup_start", .string(b.name.offsetText)),
            ]
            if let s = b.sentinel {
                kv += [
                    ("expanded_size_bytes", .int(s.expandedSizeBytes)), ("wal_segment_backup_stop", .string(s.stopSegment)),
                    ("wal_segment_offset_backup_stop", .string(s.stopOffset)),
                ]
                if let e = s.extra {
                    kv += [
                        ("start_lsn", .string(e.startLSN)), ("stop_lsn", .string(e.stopLSN)), ("timeline", .int(Int64(e.timeline))),
                        ("system_identifier", .string(e.systemIdentifier)), ("pg_version_num", .int(Int64(e.postgresVersionNumber))),
                        ("compression", .string(e.compression)), ("file_count", .int(Int64(e.fileCount))),
                        ("start_time", .string(e.startTime)), ("stop_time", .string(e.stopTime)), ("permanent", .bool(e.permanent)),
                        ("encryption_key_ids", .array(e.encryptionKeyIDs.map { .string($0) })),
                        ("type", .string(b.name.isIncremental ? "incremental" : "full")),
                    ]
                    if let i = e.incremental {
                        kv += [
                            ("parent", .string(i.parent)), ("chain_depth", .int(Int64(i.depth))), ("incremental_mode", .string(i.mode)),
                            ("incremental_from_lsn", .string(i.fromLSN)),
                        ]
                    }
                }
            }
            return .object(kv)
        }
        return JSON.array(items).serialized() + "\n"
    }
}
