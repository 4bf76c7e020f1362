import WALECore

/// How an incremental backup stores a relation file's changed blocks: a tar member named
/// `<dir>/INCREMENTAL.<file>` (PostgreSQL's own name for such files, so nobody mistakes one for
/// the file) holding
///
///     "WALEINC1"   8 bytes
///     final size   8 bytes, little-endian: the file's length once restored
///     count        4 bytes, little-endian
///     blocks       count × 4 bytes, little-endian block numbers within the file, ascending
///     data         count × 8192 bytes, the blocks in that order
///
/// Blocks of the file below its final size that are not listed come from the parent backup.
public enum DeltaMember {
    public static let magic = Array("WALEINC1".utf8)
    public static let namePrefix = "INCREMENTAL."

    public static func header(finalSize: Int64, blocks: [UInt32]) -> [UInt8] {
        var out = magic
        out.reserveCapacity(20 + 4 * blocks.count)
        appendLE(&out, UInt64(finalSize), bytes: 8)
        appendLE(&out, UInt64(blocks.count), bytes: 4)
        for b in blocks { appendLE(&out, UInt64(b), bytes: 4) }
        return out
    }

    public static func memberSize(blocks: Int) -> Int64 { 20 + Int64(blocks) * Int64(4 + RelationFile.blockSize) }

    /// `base/5/INCREMENTAL.16384` for `base/5/16384`.
    public static func memberName(for path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return namePrefix + path }
        return String(path[...slash]) + namePrefix + path[path.index(after: slash)...]
    }

    /// The file a member name patches, or nil when it is no delta member.
    public static func target(ofMember name: String) -> String? {
        let slash = name.lastIndex(of: "/").map { name.index(after: $0) } ?? name.startIndex
        guard name[slash...].hasPrefix(namePrefix), name.distance(from: slash, to: name.endIndex) > namePrefix.count else { return nil }
        return String(name[..<slash]) + name[name.index(slash, offsetBy: namePrefix.count)...]
    }

    static func appendLE(_ out: inout [UInt8], _ v: UInt64, bytes: Int) {
        for i in 0..<bytes { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }

    /// Parses a member as it streams: the header first, then each block with its offset.
    public struct Parser {
        private var head: [UInt8] = []
        public private(set) var finalSize: Int64?
        public private(set) var blocks: [UInt32] = []
        private var count: Int?
        /// Which block the next data byte belongs to, and how far into it.
        private var index = 0
        private var within = 0
        let name: String

        public init(name: String) { self.name = name }

        /// Feeds bytes; `write(offset, bytes)` is called for each run of block data.
        public mutating func feed(_ b: UnsafeRawBufferPointer, write: (Int64, UnsafeRawBufferPointer) throws -> Void) throws {
            var p = 0
            while p < b.count {
                if count == nil || head.count < 20 + 4 * (count ?? 0) {
                    let want = count.map { 20 + 4 * $0 } ?? 20
                    let take = min(want - head.count, b.count - p)
                    head += b[p..<(p + take)]
                    p += take
                    if head.count == 20 && count == nil {
                        guard Array(head[0..<8]) == DeltaMember.magic else { throw bad("it does not start with WALEINC1") }
                        finalSize = Int64(bitPattern: le(8, 8))
                        count = Int(le(16, 4))
                        guard let f = finalSize, f >= 0, f % Int64(RelationFile.blockSize) == 0,
                            count! <= Int(RelationFile.blocksPerSegment)
                        else { throw bad("its header is out of range") }
                    }
                    if let c = count, head.count == 20 + 4 * c, blocks.isEmpty, c > 0 {
                        blocks = (0..<c).map { UInt32(le(20 + 4 * $0, 4)) }
                        let limit = UInt32(finalSize! / Int64(RelationFile.blockSize))
                        for i in blocks.indices where blocks[i] >= limit || (i > 0 && blocks[i] <= blocks[i - 1]) {
                            throw bad("its block list is not ascending below the file's size")
                        }
                    }
                    continue
                }
                guard index < blocks.count else { throw bad("it holds more data than its block list") }
                let take = min(RelationFile.blockSize - within, b.count - p)
                let offset = Int64(blocks[index]) * Int64(RelationFile.blockSize) + Int64(within)
                try write(offset, UnsafeRawBufferPointer(rebasing: b[p..<(p + take)]))
                p += take
                within += take
                if within == RelationFile.blockSize {
                    within = 0
                    index += 1
                }
            }
        }

        /// The member ended: it must have held its header and every block.
        public func finish() throws {
            guard count != nil, head.count == 20 + 4 * count!, index == blocks.count, within == 0 else {
                throw bad("it is truncated")
            }
        }

        private func le(_ at: Int, _ n: Int) -> UInt64 {
            var v: UInt64 = 0
            for i in 0..<n { v |= UInt64(head[at + i]) << (8 * UInt64(i)) }
            return v
        }

        private func bad(_ why: String) -> WALEError {
            WALEError(.corrupt, "the changed-blocks member \(name) is damaged: \(why)", hint: "restore an older backup, or take a new full backup")
        }
    }
}
