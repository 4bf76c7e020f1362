import WALECore
import WALEStorage

/// `status`: one screen for an archive: its backups (count, newest and oldest with their age and
/// size, permanent ones) and its WAL (wal-verify's report without downloads: the newest segment
/// and its age, gaps per timeline, which backups reach the end), as text, JSON or Prometheus
/// textfile metrics.
public struct ArchiveStatus: Sendable {
    public struct Backup: Sendable {
        public var name: BackupName
        /// When its sentinel (written last) was stored.
        public var completedAt: Double
        public var expandedSizeBytes: Int64?
        public var permanent: Bool
    }

    public struct Report: Sendable {
        public var prefix: String
        public var backups: [Backup]
        public var wal: WALVerify.Report
        public var now: Double

        var newest: Backup? { backups.max { $0.completedAt < $1.completedAt } }
        var oldest: Backup? { backups.min { $0.completedAt < $1.completedAt } }
    }

    public let verify: WALVerify

    public init(verify: WALVerify) { self.verify = verify }

    public func run() async throws -> Report {
        let store = verify.store
        let prefix = verify.prefix
        let catalog = BackupCatalog(store: store, prefix: prefix)
        let listed = try await catalog.list()
        let backups = try await boundedConcurrently(listed, width: 8) { b -> Backup in
            // A sentinel that cannot be read still counts; its size is unknown.
            let sentinel = try? await catalog.loadSentinel(b)
            return Backup(name: b.name, completedAt: b.lastModifiedEpoch, expandedSizeBytes: sentinel?.expandedSizeBytes, permanent: b.permanent)
        }
        let wal = try await verify.run(integrity: false, poolSize: 1)
        return Report(prefix: prefix.raw, backups: backups, wal: wal, now: wal.now)
    }
}

extension ArchiveStatus.Report {
    func backupJSON(_ b: ArchiveStatus.Backup) -> JSON {
        .object([
            ("name", .string(b.name.description)), ("completed_at", .string(UTCTime(epochSeconds: b.completedAt).isoNoZone + "Z")),
            ("age_seconds", .int(Int64(max(0, now - b.completedAt)))), ("expanded_size_bytes", b.expandedSizeBytes.map { .int($0) } ?? .null),
            ("permanent", .bool(b.permanent)),
        ])
    }

    public func json() -> JSON {
        .object([
            ("prefix", .string(prefix)),
            ("backups", .object([
                ("count", .int(Int64(backups.count))), ("permanent", .int(Int64(backups.filter(\.permanent).count))),
                ("newest", newest.map(backupJSON) ?? .null), ("oldest", oldest.map(backupJSON) ?? .null),
                ("list", .array(backups.sorted { $0.completedAt < $1.completedAt }.map(backupJSON))),
            ])),
            ("wal", wal.json()),
        ])
    }

    public func text() -> String {
        func age(_ t: Double) -> String {
            let s = Int(max(0, now - t))
            return s < 120 ? "\(s) s ago" : s < 7200 ? "\(s / 60) min ago" : s < 172_800 ? "\(s / 3600) h ago" : "\(s / 86400) d ago"
        }
        var out = "prefix: \(prefix)\n"
        if let n = newest, let o = oldest {
            out += "backups: \(backups.count)" + (backups.contains(where: \.permanent) ? " (\(backups.filter(\.permanent).count) permanent)" : "") + "\n"
            out += "  newest: \(n.name), completed \(age(n.completedAt))" + (n.expandedSizeBytes.map { ", \($0) bytes" } ?? "") + "\n"
            if backups.count > 1 { out += "  oldest: \(o.name), completed \(age(o.completedAt))\n" }
        } else {
            out += "backups: none\n"
        }
        return out + wal.text()
    }

    /// The node_exporter textfile metrics.
    public func prometheus() -> String {
        var p = PrometheusText(labels: [("prefix", prefix)])
        p.gauge("wal_e_backup_count", "Complete base backups under the prefix.", Double(backups.count))
        p.gauge("wal_e_backup_permanent_count", "Permanent base backups under the prefix.", Double(backups.filter(\.permanent).count))
        if let n = newest {
            p.gauge("wal_e_backup_last_completion_timestamp_seconds", "When the newest base backup completed (its sentinel was stored).", n.completedAt)
            if let s = n.expandedSizeBytes { p.gauge("wal_e_backup_last_size_bytes", "The newest base backup's size before compression.", Double(s)) }
            let reach = wal.backups.first { $0.name == n.name }
            p.gauge("wal_e_backup_last_recoverable", "1 when the newest base backup can be recovered to the end of the WAL archive.", reach?.recoverable == true ? 1 : 0)
        }
        if let o = oldest {
            p.gauge("wal_e_backup_oldest_completion_timestamp_seconds", "When the oldest base backup completed.", o.completedAt)
        }
        if let at = wal.newestArchivedAt {
            p.gauge("wal_e_wal_last_archived_timestamp_seconds", "When the newest WAL segment was archived.", at)
        }
        p.gauge("wal_e_wal_gaps", "Runs of missing WAL segments between the oldest backup and the newest segment, all timelines.", Double(wal.timelines.reduce(0) { $0 + $1.gaps.count }))
        p.gauge("wal_e_wal_missing_segments", "Missing WAL segments between the oldest backup and the newest segment, all timelines.", Double(wal.timelines.reduce(UInt64(0)) { $0 + $1.missingSegments }))
        p.gauge("wal_e_status_timestamp_seconds", "When wal-e status wrote these metrics.", now)
        return p.render()
    }
}
