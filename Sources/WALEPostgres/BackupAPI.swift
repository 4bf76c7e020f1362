import PostgresNIO
import WALECore

/// What the server told us when a backup started.
public struct BackupStart: Sendable {
    public var lsn: LSN
    public var timeline: TimelineID
    /// 24-hex segment name and 8-digit decimal offset, as WAL-E names backups.
    public var segmentName: String
    public var offset: String
}

/// What the server told us when the backup stopped.
public struct BackupStop: Sendable {
    public var lsn: LSN
    public var segmentName: String
    public var offset: String
    /// The contents of `backup_label` and `tablespace_map` (nil when there are no tablespaces).
    public var backupLabel: String
    public var tablespaceMap: String?
}

/// Facts about the server that go into the sentinel and decide which functions to call.
public struct ServerInfo: Sendable {
    public var versionNumber: Int
    public var versionString: String
    public var dataDirectory: String
    public var segmentSize: WALSegmentSize
    public var systemIdentifier: String
    public var inRecovery: Bool
}

extension PostgresSession {
    public func serverInfo() async throws -> ServerInfo {
        let rows = try await query(
            """
            SELECT current_setting('server_version_num'), version(), current_setting('data_directory'),
                   (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'),
                   (SELECT unit FROM pg_settings WHERE name = 'wal_segment_size'),
                   pg_is_in_recovery()::text
            """)
        guard let r = rows.first, let num = r[0].flatMap({ Int($0) }), let sizeText = r[3], let setting = UInt64(sizeText) else {
            throw WALEError(.internal, "unexpected answer to the server information query")
        }
        // wal_segment_size is in bytes since PostgreSQL 11 (unit "B"), in 8 kB blocks before.
        let bytes = r[4] == "B" ? setting : setting * 8192
        guard num >= 90600 else {
            throw WALEError(.user, "PostgreSQL \(r[1] ?? "") is too old", hint: "wal-e takes backups of PostgreSQL 9.6 and later")
        }
        guard let size = WALSegmentSize(bytes: bytes) else { throw WALEError(.internal, "unexpected wal_segment_size \(bytes)") }
        let sysid = try await value("SELECT system_identifier::text FROM pg_control_system()") ?? ""
        return ServerInfo(
            versionNumber: num, versionString: r[1] ?? "", dataDirectory: r[2] ?? "", segmentSize: size,
            systemIdentifier: sysid, inRecovery: r[5] == "true")
    }

    /// `pg_backup_start(label, fast)` on 15+, `pg_start_backup(label, fast, false)` on 9.6–14.
    public func startBackup(label: String, fast: Bool, server: ServerInfo) async throws -> BackupStart {
        let sql: PostgresQuery =
            server.versionNumber >= 150000
            ? "SELECT pg_backup_start(\(label), \(fast))::text"
            : "SELECT pg_start_backup(\(label), \(fast), false)::text"
        guard let text = try await value(sql), let lsn = LSN(parsing: text) else {
            throw WALEError(.internal, "pg_backup_start returned no position")
        }
        let tli = try await value("SELECT timeline_id::text FROM pg_control_checkpoint()").flatMap { UInt32($0) } ?? 1
        let (name, offset) = try await segmentAndOffset(lsn, timeline: TimelineID(tli), server: server)
        return BackupStart(lsn: lsn, timeline: TimelineID(tli), segmentName: name, offset: offset)
    }

    /// `pg_backup_stop(false)` on 15+, `pg_stop_backup(false, false)` on 9.6–14: returns the label
    /// and tablespace map without waiting for archiving (the caller watches the archive itself,
    /// which is faster than the server's one-second polling and can report a failing archiver).
    public func stopBackup(timeline: TimelineID, server: ServerInfo) async throws -> BackupStop {
        let sql: PostgresQuery =
            server.versionNumber >= 150000
            ? "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)"
            : "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, false)"
        guard let r = try await query(sql).first, let text = r[0], let lsn = LSN(parsing: text), let label = r[1] else {
            throw WALEError(.internal, "pg_backup_stop returned no position")
        }
        let (name, offset) = try await segmentAndOffset(lsn, timeline: timeline, server: server)
        let map = r[2].flatMap { $0.isEmpty ? nil : $0 }
        return BackupStop(lsn: lsn, segmentName: name, offset: offset, backupLabel: label, tablespaceMap: map)
    }

    /// The WAL file holding `lsn` (the last one a backup ending there needs).
    public func walFileName(_ lsn: LSN, timeline: TimelineID, server: ServerInfo) async throws -> String {
        if !server.inRecovery, let name = try await value("SELECT pg_walfile_name(\(lsn.description)::pg_lsn)") { return name }
        return lsn.segment(timeline: timeline, size: server.segmentSize).description
    }

    /// `archive_mode`, the last WAL file archived, and the archiver's last failure (WAL file name
    /// and time), if any.
    public func archiverState() async throws -> (mode: String, lastArchivedWAL: String?, lastFailedWAL: String?, lastFailedTime: String?) {
        let r = try await query(
            "SELECT current_setting('archive_mode'), last_archived_wal, last_failed_wal, last_failed_time::text FROM pg_stat_archiver").first
        return (r?[0] ?? "off", r?[1] ?? nil, r?[2] ?? nil, r?[3] ?? nil)
    }

    /// WAL-E's naming: `pg_walfile_name_offset()` on a primary; computed from the LSN on a standby,
    /// where that function is not available.
    func segmentAndOffset(_ lsn: LSN, timeline: TimelineID, server: ServerInfo) async throws -> (String, String) {
        if !server.inRecovery,
            let r = try await query(
                "SELECT file_name, lpad(file_offset::text, 8, '0') FROM pg_walfile_name_offset(\(lsn.description)::pg_lsn)"
            ).first,
            let name = r[0], let off = r[1]
        {
            return (name, off)
        }
        let seg = lsn.segment(timeline: timeline, size: server.segmentSize)
        return (seg.description, BackupName.offsetText(lsn.offset(in: server.segmentSize)))
    }
}
