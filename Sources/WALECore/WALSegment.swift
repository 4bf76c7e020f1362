/// A timeline identifier (`TimeLineID`).
public struct TimelineID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let value: UInt32
    public init(_ value: UInt32) { self.value = value }
    public var description: String { hex8(UInt64(value)) }
    public static func < (a: TimelineID, b: TimelineID) -> Bool { a.value < b.value }
}

/// The WAL segment size of a cluster: a power of two from 1 MiB to 1 GiB (16 MiB by default).
public struct WALSegmentSize: Hashable, Sendable, CustomStringConvertible {
    public let bytes: UInt64
    public static let `default` = WALSegmentSize(unchecked: 16 << 20)

    /// Returns nil unless `bytes` is a power of two between 1 MiB and 1 GiB.
    public init?(bytes: UInt64) {
        guard bytes >= 1 << 20, bytes <= 1 << 30, bytes & (bytes - 1) == 0 else { return nil }
        self.bytes = bytes
    }
    init(unchecked bytes: UInt64) { self.bytes = bytes }

    /// Segments per 4 GiB "log id" (the middle 8 hex digits of a segment name).
    public var segmentsPerLogID: UInt64 { 0x1_0000_0000 / bytes }
    public var description: String { "\(bytes >> 20) MiB" }
}

/// A WAL segment file name `TTTTTTTTLLLLLLLLSSSSSSSS` (timeline, log id, segment within the log id).
public struct WALSegmentName: Hashable, Sendable, CustomStringConvertible {
    public let timeline: TimelineID
    public let log: UInt32
    public let seg: UInt32

    public init(timeline: TimelineID, log: UInt32, seg: UInt32) {
        self.timeline = timeline
        self.log = log
        self.seg = seg
    }

    /// The segment with absolute number `segmentNumber` (`XLogSegNo`) for a segment size.
    public init(timeline: TimelineID, segmentNumber: UInt64, size: WALSegmentSize) {
        self.timeline = timeline
        self.log = UInt32(truncatingIfNeeded: segmentNumber / size.segmentsPerLogID)
        self.seg = UInt32(truncatingIfNeeded: segmentNumber % size.segmentsPerLogID)
    }

    /// Parses exactly 24 upper-case hex digits (PostgreSQL and WAL-E only produce upper case).
    public init?(_ text: some StringProtocol) {
        let utf8 = Array(text.utf8)
        guard utf8.count == 24, utf8.allSatisfy(isUpperHex) else { return nil }
        let s = String(decoding: utf8, as: UTF8.self)
        func field(_ i: Int) -> UInt32 {
            UInt32(s[s.index(s.startIndex, offsetBy: i)..<s.index(s.startIndex, offsetBy: i + 8)], radix: 16)!
        }
        self.init(timeline: TimelineID(field(0)), log: field(8), seg: field(16))
    }

    /// The absolute segment number (`XLogSegNo`), given the segment size.
    public func segmentNumber(size: WALSegmentSize) -> UInt64 {
        UInt64(log) * size.segmentsPerLogID + UInt64(seg)
    }

    /// The first LSN inside this segment.
    public func startLSN(size: WALSegmentSize) -> LSN { LSN(segmentNumber(size: size) * size.bytes) }

    /// The segment `count` positions later on the same timeline.
    public func advanced(by count: UInt64, size: WALSegmentSize) -> WALSegmentName {
        WALSegmentName(timeline: timeline, segmentNumber: segmentNumber(size: size) + count, size: size)
    }

    /// Whether `seg` is a valid in-log segment index for this size (e.g. at most 0xFF for 16 MiB).
    public func isValid(for size: WALSegmentSize) -> Bool { UInt64(seg) < size.segmentsPerLogID }

    /// log and seg without the timeline: the "segment number" WAL-E's delete compares.
    public var logSeg: UInt64 { UInt64(log) << 32 | UInt64(seg) }

    public var description: String { hex8(UInt64(timeline.value)) + hex8(UInt64(log)) + hex8(UInt64(seg)) }
}

/// What kind of file PostgreSQL asked us to archive or restore, from its base name.
public enum WALFileName: Hashable, Sendable, CustomStringConvertible {
    /// A complete segment, `000000010000000000000001`.
    case segment(WALSegmentName)
    /// A partial segment written at promotion, `000000010000000000000001.partial`.
    case partial(WALSegmentName)
    /// A backup history file, `000000010000000000000002.00000028.backup`.
    case backupHistory(WALSegmentName, offset: UInt32)
    /// A timeline history file, `00000002.history`.
    case history(TimelineID)

    /// Parses a base name (no directory). Returns nil when the name is none of PostgreSQL's WAL files.
    public init?(_ name: String) {
        if let s = WALSegmentName(name) {
            self = .segment(s)
            return
        }
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        if parts.count == 2, parts[1] == "partial", let s = WALSegmentName(parts[0]) {
            self = .partial(s)
        } else if parts.count == 3, parts[2] == "backup", let s = WALSegmentName(parts[0]),
            parts[1].utf8.count == 8, parts[1].utf8.allSatisfy(isUpperHex), let off = UInt32(parts[1], radix: 16)
        {
            self = .backupHistory(s, offset: off)
        } else if parts.count == 2, parts[1] == "history", parts[0].utf8.count == 8,
            parts[0].utf8.allSatisfy(isUpperHex), let t = UInt32(parts[0], radix: 16)
        {
            self = .history(TimelineID(t))
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .segment(let s): return s.description
        case .partial(let s): return s.description + ".partial"
        case .backupHistory(let s, let off): return s.description + "." + hex8(UInt64(off)) + ".backup"
        case .history(let t): return t.description + ".history"
        }
    }

    /// The segment for names that carry a whole segment's bytes (segments and partial segments).
    public var segmentFile: WALSegmentName? {
        switch self {
        case .segment(let s), .partial(let s): return s
        default: return nil
        }
    }
}

@inline(__always) func isUpperHex(_ c: UInt8) -> Bool { (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) }

/// 8 upper-case hex digits, zero padded.
public func hex8(_ v: UInt64) -> String {
    let s = String(v, radix: 16, uppercase: true)
    return s.count >= 8 ? s : String(repeating: "0", count: 8 - s.count) + s
}
