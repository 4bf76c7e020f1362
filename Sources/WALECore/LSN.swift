/// A PostgreSQL write-ahead log position (`XLogRecPtr`), printed as `X/Y` in hex.
public struct LSN: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let value: UInt64

    public init(_ value: UInt64) { self.value = value }

    /// Parses PostgreSQL's `X/Y` text form (hex, either case). Returns nil for anything else.
    public init?(parsing text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, (1...8).contains(parts[0].count), (1...8).contains(parts[1].count),
            let hi = UInt64(parts[0], radix: 16), let lo = UInt64(parts[1], radix: 16)
        else { return nil }
        self.value = hi << 32 | lo
    }

    public var description: String {
        String(value >> 32, radix: 16, uppercase: true) + "/" + String(value & 0xFFFF_FFFF, radix: 16, uppercase: true)
    }

    public static func < (a: LSN, b: LSN) -> Bool { a.value < b.value }

    /// The segment this position falls in.
    public func segment(timeline: TimelineID, size: WALSegmentSize) -> WALSegmentName {
        WALSegmentName(timeline: timeline, segmentNumber: value / size.bytes, size: size)
    }

    /// Byte offset of this position inside its segment.
    public func offset(in size: WALSegmentSize) -> UInt64 { value % size.bytes }
}
