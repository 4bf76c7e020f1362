/// A base backup's name, `base_<24-hex start segment>_<8-digit decimal offset>`, or an incremental
/// backup's, `incr_<segment>_<offset>`: WAL-E 1.1 lists, restores and deletes only `base_` names
/// (its regexes), so an incremental, which cannot be restored without its parents, stays invisible
/// to it (docs/incremental.md).
public struct BackupName: Hashable, Sendable, Comparable, CustomStringConvertible {
    public enum Kind: String, Sendable {
        case full = "base_"
        case incremental = "incr_"
    }
    public let kind: Kind
    public let segment: WALSegmentName
    /// The offset text exactly as in the name (8 decimal digits, as WAL-E's `lpad` wrote it).
    public let offsetText: String

    public init(segment: WALSegmentName, offsetText: String, kind: Kind = .full) {
        self.kind = kind
        self.segment = segment
        self.offsetText = offsetText
    }

    /// Parses `base_<segment>_<offset>` or `incr_<segment>_<offset>` (WAL-E's regex accepts 8 hex
    /// digits; it only ever wrote decimal).
    public init?(_ text: some StringProtocol) {
        let s = String(text)
        guard let kind = Kind(rawValue: String(s.prefix(5))), s.utf8.count == 5 + 24 + 1 + 8 else { return nil }
        let body = s.dropFirst(5)
        guard let seg = WALSegmentName(body.prefix(24)), body.dropFirst(24).first == "_" else { return nil }
        let off = String(body.suffix(8))
        guard off.utf8.allSatisfy(isUpperHex) else { return nil }
        self.init(segment: seg, offsetText: off, kind: kind)
    }

    public var isIncremental: Bool { kind == .incremental }

    public var description: String { "\(kind.rawValue)\(segment)_\(offsetText)" }

    /// `lpad(offset::text, 8, '0')`: values above 99,999,999 are truncated to 8 characters, as in WAL-E.
    public static func offsetText(_ offset: UInt64) -> String {
        let s = String(offset)
        return s.count >= 8 ? String(s.prefix(8)) : String(repeating: "0", count: 8 - s.count) + s
    }

    public static func < (a: BackupName, b: BackupName) -> Bool { a.description < b.description }

    // The backup layout, in one place: every key a backup is made of.

    /// Completes the backup's name in `basebackups_005/` (written last).
    public static let sentinelSuffix = "_backup_stop_sentinel.json"
    /// The object under the backup's directory that marks it permanent (WAL-E never lists it).
    public static let permanentMarkerName = "wal_e_permanent"

    /// The backup a sentinel's name (relative to `basebackups_005/`) completes, if it is one.
    public static func completed(bySentinel rel: some StringProtocol) -> BackupName? {
        guard !rel.contains("/"), rel.hasSuffix(sentinelSuffix) else { return nil }
        return BackupName(rel.dropLast(sentinelSuffix.count))
    }

    /// The sentinel key for this backup under a prefix.
    public func sentinelKey(_ p: StoragePrefix) -> String { p.baseBackupsDirectory + description + Self.sentinelSuffix }
    public func versionKey(_ p: StoragePrefix) -> String { directory(p) + "extended_version.txt" }
    public func permanentMarkerKey(_ p: StoragePrefix) -> String { directory(p) + Self.permanentMarkerName }
    public func partitionsDirectory(_ p: StoragePrefix) -> String { directory(p) + "tar_partitions/" }
    public func manifestsDirectory(_ p: StoragePrefix) -> String { directory(p) + "wal_e_manifest/" }
    /// The backup's directory (ends with `/`).
    public func directory(_ p: StoragePrefix) -> String { p.baseBackupsDirectory + description + "/" }
    public func partitionKey(_ p: StoragePrefix, _ n: Int, suffix: String) -> String {
        partitionsDirectory(p) + "part_" + pad8(n) + ".tar" + suffix
    }
    public func manifestKey(_ p: StoragePrefix, _ n: Int) -> String { manifestsDirectory(p) + "part_" + pad8(n) + ".json" }
    /// An incremental backup's manifest of the whole cluster it restores to.
    public func clusterManifestKey(_ p: StoragePrefix) -> String { directory(p) + "wal_e_cluster_manifest.json" }
}

func pad8(_ n: Int) -> String {
    let s = String(n)
    return s.count >= 8 ? s : String(repeating: "0", count: 8 - s.count) + s
}
