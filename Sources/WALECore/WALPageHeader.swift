/// The long page header at the start of every WAL segment file (`XLogLongPageHeaderData`).
///
/// wal-push reads it before uploading so that a file which is not a WAL segment of the
/// expected size and position is refused instead of archived under a segment's name.
public struct WALPageHeader: Sendable, Equatable {
    public static let length = 40
    /// `XLP_LONG_HEADER`: set in the first page of every segment.
    public static let longHeaderFlag: UInt16 = 0x0002

    /// `XLOG_PAGE_MAGIC` of each PostgreSQL major version that WAL-E or we support.
    public static let knownMagics: [UInt16: String] = [
        0xD087: "9.5", 0xD093: "9.6", 0xD097: "10", 0xD098: "11", 0xD101: "12", 0xD106: "13",
        0xD10D: "14", 0xD110: "15", 0xD113: "16", 0xD116: "17", 0xD118: "18",
    ]

    public let magic: UInt16
    public let info: UInt16
    public let timeline: TimelineID
    public let pageAddress: LSN
    public let systemIdentifier: UInt64
    public let segmentSizeField: UInt32
    public let blockSize: UInt32

    /// Decodes the first 40 bytes of a segment (little-endian, as written on this machine).
    public init?(_ bytes: some Collection<UInt8>) {
        let b = Array(bytes.prefix(Self.length))
        guard b.count == Self.length else { return nil }
        func u16(_ o: Int) -> UInt16 { UInt16(b[o]) | UInt16(b[o + 1]) << 8 }
        func u32(_ o: Int) -> UInt32 { UInt32(u16(o)) | UInt32(u16(o + 2)) << 16 }
        func u64(_ o: Int) -> UInt64 { UInt64(u32(o)) | UInt64(u32(o + 4)) << 32 }
        magic = u16(0)
        info = u16(2)
        timeline = TimelineID(u32(4))
        pageAddress = LSN(u64(8))
        systemIdentifier = u64(24)
        segmentSizeField = u32(32)
        blockSize = u32(36)
    }

    /// The PostgreSQL major version that writes this magic, if known.
    public var postgresVersion: String? { Self.knownMagics[magic] }

    /// The segment size recorded in the header, if it is a legal one.
    public var segmentSize: WALSegmentSize? { WALSegmentSize(bytes: UInt64(segmentSizeField)) }

    public enum Problem: Error, Equatable, Sendable, CustomStringConvertible {
        case tooShort(Int)
        case badMagic(UInt16)
        case notLongHeader
        case badSegmentSize(UInt32)
        case badBlockSize(UInt32)
        case fileSizeMismatch(fileSize: UInt64, headerSegmentSize: UInt64)
        case wrongPageAddress(expected: LSN, found: LSN)

        public var description: String {
            switch self {
            case .tooShort(let n): return "the file is \(n) bytes long, shorter than a WAL page header"
            case .badMagic(let m):
                return "the page magic is 0x\(String(m, radix: 16, uppercase: true)), not one written by any known PostgreSQL version"
            case .notLongHeader: return "the first page lacks the long page header every WAL segment starts with"
            case .badSegmentSize(let s): return "the header's segment size \(s) is not a power of two between 1 MiB and 1 GiB"
            case .badBlockSize(let s): return "the header's WAL block size \(s) is not a power of two between 1 KiB and 64 KiB"
            case .fileSizeMismatch(let f, let h):
                return "the file is \(f) bytes long but its header says segments are \(h) bytes"
            case .wrongPageAddress(let e, let f):
                return "the header's page address \(f) does not match the file name, which implies \(e)"
            }
        }
    }

    /// Checks that a file named `name`, `fileSize` bytes long, starting with `bytes`, is a WAL segment.
    /// Unknown magic numbers in PostgreSQL's range (0xD0xx–0xD1xx) are accepted when everything else
    /// fits, so a new PostgreSQL release does not stop archiving; `isKnownMagic` tells the caller to warn.
    public static func validate(_ bytes: [UInt8], fileSize: UInt64, name: WALSegmentName) -> Result<WALPageHeader, Problem> {
        guard bytes.count >= length, let h = WALPageHeader(bytes) else { return .failure(.tooShort(bytes.count)) }
        guard h.magic & 0xFE00 == 0xD000 else { return .failure(.badMagic(h.magic)) }
        guard h.info & longHeaderFlag != 0 else { return .failure(.notLongHeader) }
        guard let size = h.segmentSize else { return .failure(.badSegmentSize(h.segmentSizeField)) }
        guard h.blockSize >= 1024, h.blockSize <= 65536, h.blockSize & (h.blockSize - 1) == 0 else {
            return .failure(.badBlockSize(h.blockSize))
        }
        guard fileSize == size.bytes else { return .failure(.fileSizeMismatch(fileSize: fileSize, headerSegmentSize: size.bytes)) }
        let expected = name.startLSN(size: size)
        guard name.isValid(for: size), h.pageAddress == expected else {
            return .failure(.wrongPageAddress(expected: expected, found: h.pageAddress))
        }
        return .success(h)
    }

    public var isKnownMagic: Bool { Self.knownMagics[magic] != nil }
}
