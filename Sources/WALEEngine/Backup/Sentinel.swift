import WALECore
import WALECodec

/// The `<backup>_backup_stop_sentinel.json` object: WAL-E's four keys first, in WAL-E's order, then
/// ours (WAL-E's readers set every key as an attribute, so extra keys are harmless).
public struct Sentinel: Sendable, Equatable {
    public var stopSegment: String
    public var stopOffset: String
    public var expandedSizeBytes: Int64
    public var basePrefix: String
    public var tablespaces: [TablespaceSpec]
    /// Our additions (nil in WAL-E's sentinels).
    public var extra: Extra?

    public struct Extra: Sendable, Equatable {
        public var startLSN: String
        public var stopLSN: String
        public var timeline: UInt32
        public var systemIdentifier: String
        public var postgresVersion: String
        public var postgresVersionNumber: Int
        public var segmentSize: UInt64
        public var compression: String
        public var fileCount: Int
        public var partitionCount: Int
        public var startTime: String
        public var stopTime: String
        public var online: Bool
        public var permanent: Bool
        /// The native encryption key ids a restore needs one of (empty: clear or gpg).
        public var encryptionKeyIDs: [String] = []
        /// An incremental backup's parent (nil for a full backup), its depth in the chain (1 for
        /// the first incremental over a full), how its changes were found ("block": WAL
        /// summaries; "file": size and modification time) and the parent's start LSN it covers from.
        public var incremental: Incremental? = nil
    }

    public struct Incremental: Sendable, Equatable {
        public var parent: String
        public var depth: Int
        public var mode: String
        public var fromLSN: String
        public init(parent: String, depth: Int, mode: String, fromLSN: String) {
            self.parent = parent
            self.depth = depth
            self.mode = mode
            self.fromLSN = fromLSN
        }
    }

    public func json() -> JSON {
        var spec: [(String, JSON)] = [
            ("base_prefix", .string(basePrefix)), ("tablespaces", .array(tablespaces.map { .string($0.oid) })),
        ]
        for t in tablespaces { spec.append((t.oid, .object([("loc", .string(t.loc)), ("link", .string(t.link))]))) }
        var kv: [(String, JSON)] = [
            ("wal_segment_backup_stop", .string(stopSegment)), ("wal_segment_offset_backup_stop", .string(stopOffset)),
            ("expanded_size_bytes", .int(expandedSizeBytes)), ("spec", .object(spec)),
        ]
        if let e = extra {
            kv += [
                ("wal_e_swift_version", .string(walEVersionString)),
                ("backup_start_lsn", .string(e.startLSN)), ("backup_stop_lsn", .string(e.stopLSN)),
                ("timeline", .int(Int64(e.timeline))), ("system_identifier", .string(e.systemIdentifier)),
                ("pg_version", .string(e.postgresVersion)), ("pg_version_num", .int(Int64(e.postgresVersionNumber))),
                ("wal_segment_size", .int(Int64(e.segmentSize))), ("compression", .string(e.compression)),
                ("file_count", .int(Int64(e.fileCount))), ("partition_count", .int(Int64(e.partitionCount))),
                ("start_time", .string(e.startTime)), ("stop_time", .string(e.stopTime)),
                ("online", .bool(e.online)), ("permanent", .bool(e.permanent)),
            ]
            if !e.encryptionKeyIDs.isEmpty { kv.append(("encryption_key_ids", .array(e.encryptionKeyIDs.map { .string($0) }))) }
            if let i = e.incremental {
                kv += [
                    ("incremental_parent", .string(i.parent)), ("incremental_depth", .int(Int64(i.depth))),
                    ("incremental_mode", .string(i.mode)), ("incremental_from_lsn", .string(i.fromLSN)),
                ]
            }
        }
        return .object(kv)
    }

    /// The key holding the SHA-256 of the sentinel's own text (an extra key WAL-E ignores).
    public static let checksumKey = "wal_e_sentinel_sha256"

    /// The stored text: the JSON object with, as its last key, the SHA-256 of the text it would
    /// be without that key (so a changed digit anywhere in it is detected).
    public func storedText() -> String { SealedText.seal(json().serialized(), key: Self.checksumKey) }

    /// Reads a stored sentinel, checking its own checksum when it has one (WAL-E's have none).
    public static func parse(stored bytes: [UInt8], key: String) throws -> Sentinel {
        var text = String(decoding: bytes, as: UTF8.self)
        while let l = text.last, l == "\n" || l == "\r" || l == " " { text.removeLast() }
        switch SealedText.check(text, key: checksumKey) {
        case .unsealed, .intact:
            break
        case .malformed:
            throw WALEError(.corrupt, "backup sentinel \(key) is damaged: its checksum field is malformed",
                            hint: "do not restore or delete by this sentinel; take a new backup")
        case .altered(let stored, let actual):
            throw WALEError(
                .corrupt, "backup sentinel \(key) is damaged: its content does not match its checksum",
                detail: "stored \(stored), computed \(actual)",
                hint: "the stop position and sizes it gives cannot be trusted; do not restore or delete by it, take a new backup")
        }
        do {
            return try Sentinel(json: try JSON.parse(text))
        } catch let e as JSON.ParseError {
            throw WALEError(.corrupt, "backup sentinel \(key) is not valid JSON", detail: e.description)
        }
    }

    /// Reads WAL-E's sentinels (any key order, extra keys ignored) and ours.
    public init(json: JSON) throws {
        guard let stop = json["wal_segment_backup_stop"]?.string else {
            throw WALEError(.corrupt, "backup sentinel lacks wal_segment_backup_stop")
        }
        stopSegment = stop
        stopOffset = json["wal_segment_offset_backup_stop"]?.string ?? ""
        expandedSizeBytes = json["expanded_size_bytes"]?.int ?? 0
        let spec = json["spec"]
        basePrefix = spec?["base_prefix"]?.string ?? ""
        tablespaces = (spec?["tablespaces"]?.array ?? []).compactMap { v -> TablespaceSpec? in
            guard let oid = v.string ?? v.int.map({ String($0) }) else { return nil }
            return TablespaceSpec(oid: oid, loc: spec?[oid]?["loc"]?.string ?? "", link: spec?[oid]?["link"]?.string ?? "pg_tblspc/" + oid)
        }
        if let start = json["backup_start_lsn"]?.string {
            extra = Extra(
                startLSN: start, stopLSN: json["backup_stop_lsn"]?.string ?? "",
                timeline: UInt32(json["timeline"]?.int ?? 0), systemIdentifier: json["system_identifier"]?.string ?? "",
                postgresVersion: json["pg_version"]?.string ?? "", postgresVersionNumber: Int(json["pg_version_num"]?.int ?? 0),
                segmentSize: UInt64(json["wal_segment_size"]?.int ?? 0), compression: json["compression"]?.string ?? "lzop",
                fileCount: Int(json["file_count"]?.int ?? 0), partitionCount: Int(json["partition_count"]?.int ?? 0),
                startTime: json["start_time"]?.string ?? "", stopTime: json["stop_time"]?.string ?? "",
                online: json["online"]?.bool ?? true, permanent: json["permanent"]?.bool ?? false,
                encryptionKeyIDs: (json["encryption_key_ids"]?.array ?? []).compactMap(\.string))
            if let parent = json["incremental_parent"]?.string {
                extra?.incremental = Incremental(
                    parent: parent, depth: Int(json["incremental_depth"]?.int ?? 1), mode: json["incremental_mode"]?.string ?? "",
                    fromLSN: json["incremental_from_lsn"]?.string ?? "")
            }
        }
    }

    public init(
        stopSegment: String, stopOffset: String, expandedSizeBytes: Int64, basePrefix: String, tablespaces: [TablespaceSpec],
        extra: Extra?
    ) {
        self.stopSegment = stopSegment
        self.stopOffset = stopOffset
        self.expandedSizeBytes = expandedSizeBytes
        self.basePrefix = basePrefix
        self.tablespaces = tablespaces
        self.extra = extra
    }
}

/// The version wal-e reports (`wal-e version`, sentinels).
public let walEVersionString = "1.2.0"
