/// Everything the deletion planner knows about an archive, gathered from one listing.
public struct ArchiveState: Sendable {
    public struct Backup: Sendable, Equatable {
        public var name: BackupName
        /// The sentinel exists.
        public var complete: Bool
        /// When the backup started (sentinel `start_time`, else the sentinel's last-modified time;
        /// for incomplete backups the oldest of their objects).
        public var startTime: Double
        /// The newest last-modified time among the backup's objects.
        public var lastActivity: Double
        public var permanent: Bool
        /// Every key that belongs to it (its directory's objects and its sentinel).
        public var keys: [String]
        public var sentinelKey: String?
        /// The backup an incremental one is built on (from its sentinel).
        public var parent: BackupName?

        public init(
            name: BackupName, complete: Bool, startTime: Double, lastActivity: Double, permanent: Bool, keys: [String],
            sentinelKey: String?, parent: BackupName? = nil
        ) {
            self.parent = parent
            self.name = name
            self.complete = complete
            self.startTime = startTime
            self.lastActivity = lastActivity
            self.permanent = permanent
            self.keys = keys
            self.sentinelKey = sentinelKey
        }

        public var timeline: TimelineID { name.segment.timeline }
        /// The start position as WAL-E compares it (log and segment, without the timeline).
        public var startLogSeg: UInt64 { name.segment.logSeg }
    }

    public struct WALObject: Sendable, Equatable {
        public var key: String
        /// nil for names that are none of PostgreSQL's WAL files (kept, with a warning).
        public var file: WALFileName?
        public init(key: String, file: WALFileName?) {
            self.key = key
            self.file = file
        }
    }

    public var backups: [Backup]
    public var wal: [WALObject]
    /// For each timeline with a history file: all its ancestor timelines.
    public var ancestors: [TimelineID: Set<TimelineID>]
    /// Keys under the prefix in WAL-E's obsolete layouts (basebackups_000–004, wal_000–004).
    public var obsoleteKeys: [String]

    public init(backups: [Backup], wal: [WALObject], ancestors: [TimelineID: Set<TimelineID>], obsoleteKeys: [String] = []) {
        self.backups = backups
        self.wal = wal
        self.ancestors = ancestors
        self.obsoleteKeys = obsoleteKeys
    }

    /// Parses a timeline history file: the first field of every line is an ancestor timeline.
    public static func parseHistory(_ text: String) -> Set<TimelineID> {
        var out: Set<TimelineID> = []
        for line in text.split(separator: "\n") {
            let t = line.drop(while: { $0 == " " || $0 == "\t" })
            if t.hasPrefix("#") || t.isEmpty { continue }
            if let f = t.split(whereSeparator: { $0 == " " || $0 == "\t" }).first, let v = UInt32(f) { out.insert(TimelineID(v)) }
        }
        return out
    }
}
