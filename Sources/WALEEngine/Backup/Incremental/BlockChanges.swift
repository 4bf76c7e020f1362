/// The blocks changed since an incremental backup's parent started, as PostgreSQL's WAL summaries
/// (17+) report them, and the rule that decides from them how each relation file is stored.
public struct BlockChanges: Sendable {
    public struct Key: Hashable, Sendable {
        public var tablespace: UInt32
        public var database: UInt32
        public var relfilenode: UInt32
        public var fork: UInt8
        public init(tablespace: UInt32, database: UInt32, relfilenode: UInt32, fork: UInt8) {
            self.tablespace = tablespace
            self.database = database
            self.relfilenode = relfilenode
            self.fork = fork
        }
    }

    public struct Entry: Sendable {
        /// The smallest length (in blocks) the relation fork was truncated to, or created at (0).
        public var limit: UInt32?
        /// Modified blocks (absolute block numbers), ascending and unique.
        public var blocks: [UInt32]
    }

    public private(set) var entries: [Key: Entry] = [:]
    /// (tablespace, database) pairs created since the parent (relfilenode 0 in the summaries):
    /// everything in them is stored whole.
    public private(set) var createdDatabases: Set<[UInt32]> = []

    public init() {}

    /// Adds one relation fork's summary: `limit` (is_limit_block rows' minimum) and modified blocks.
    public mutating func add(_ key: Key, limit: UInt32?, blocks: [UInt32]) {
        if key.relfilenode == 0 {
            createdDatabases.insert([key.tablespace, key.database])
            return
        }
        var e = entries[key] ?? Entry(limit: nil, blocks: [])
        if let l = limit { e.limit = min(e.limit ?? l, l) }
        e.blocks = Array(Set(e.blocks).union(blocks)).sorted()
        entries[key] = e
    }

    public enum Method: Equatable, Sendable {
        /// Store the whole file.
        case whole
        /// The same bytes as in the parent: store nothing.
        case reference
        /// Store these blocks (numbers relative to the segment file, ascending); the file's new
        /// length is its size now; every other block below it comes from the parent.
        case delta([UInt32])
    }

    /// How to store the relation segment `file` of `size` bytes, whose parent copy (if the parent
    /// has one) is `parentSize` bytes. `unlogged`: the relation has an init fork, so its changes are
    /// not WAL-logged and summaries do not see them.
    ///
    /// Blocks below the smallest of the parent's length, the truncation limit and the current
    /// length that no summary marks modified are the parent's; all others are stored. This is
    /// PostgreSQL's own rule (basebackup_incremental.c) with the parent's length from its
    /// manifest, so a reconstructed file never takes a block from the parent that the relation
    /// lost to a truncation or never had there. Whole instead when the file is new, the fork is
    /// the free-space map (not WAL-logged), the relation is unlogged, the database is new, or 90%
    /// of the blocks would be stored anyway.
    public func method(for file: RelationFile, size: Int64, parentSize: Int64?, unlogged: Bool) -> Method {
        let bs = Int64(RelationFile.blockSize)
        guard let parentSize, size > 0, size % bs == 0, parentSize % bs == 0,
            size / bs <= Int64(RelationFile.blocksPerSegment), parentSize / bs <= Int64(RelationFile.blocksPerSegment),
            file.fork != .fsm, file.fork != .initialization, !unlogged,
            !createdDatabases.contains([file.tablespace, file.database])
        else { return .whole }
        let length = UInt32(size / bs)
        let parentLength = UInt32(parentSize / bs)
        let start = file.segment * RelationFile.blocksPerSegment
        let key = Key(tablespace: file.tablespace, database: file.database, relfilenode: file.relfilenode, fork: file.fork.rawValue)
        var keep = min(length, parentLength)
        var changed: [UInt32] = []
        if let e = entries[key] {
            if let limit = e.limit {
                if limit <= start { return .whole }
                keep = min(keep, limit - start)
            }
            let end = start + keep
            changed = e.blocks.lazy.filter { $0 >= start && $0 < end }.map { $0 - start }
        }
        let stored = changed + Array(keep..<length)
        if stored.isEmpty && length == parentLength { return .reference }
        if Double(stored.count) > Double(length) * 0.9 { return .whole }
        return .delta(stored)
    }
}
