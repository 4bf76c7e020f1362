/// A relation data file's identity, parsed from its path in the cluster: `base/<db>/<relfilenode>`,
/// `global/<relfilenode>`, `pg_tblspc/<spc>/<PG_version_catversion>/<db>/<relfilenode>`, each with
/// an optional `_fsm`, `_vm` or `_init` fork suffix and `.N` segment suffix (1 GiB segments).
/// These are the names WAL summaries speak of (tablespace, database, relfilenode, fork, block).
public struct RelationFile: Hashable, Sendable {
    public static let defaultTablespace: UInt32 = 1663
    public static let globalTablespace: UInt32 = 1664
    /// Blocks per segment file (RELSEG_SIZE with the default 8 kB blocks and 1 GiB segments).
    public static let blocksPerSegment: UInt32 = 131_072
    public static let blockSize = 8192

    public enum Fork: UInt8, Sendable {
        case main = 0, fsm = 1, vm = 2, initialization = 3
    }

    public var tablespace: UInt32
    public var database: UInt32
    public var relfilenode: UInt32
    public var fork: Fork
    public var segment: UInt32

    public init(tablespace: UInt32, database: UInt32, relfilenode: UInt32, fork: Fork, segment: UInt32) {
        self.tablespace = tablespace
        self.database = database
        self.relfilenode = relfilenode
        self.fork = fork
        self.segment = segment
    }

    /// nil for every file that is not a relation segment (temporary relations `t3_…` included).
    public init?(path: String) {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        let file: Substring
        switch parts.count {
        case 2 where parts[0] == "global":
            (tablespace, database, file) = (Self.globalTablespace, 0, parts[1])
        case 3 where parts[0] == "base":
            guard let db = Self.number(parts[1]) else { return nil }
            (tablespace, database, file) = (Self.defaultTablespace, db, parts[2])
        case 5 where parts[0] == "pg_tblspc" && parts[2].hasPrefix("PG_"):
            guard let spc = Self.number(parts[1]), let db = Self.number(parts[3]) else { return nil }
            (tablespace, database, file) = (spc, db, parts[4])
        default:
            return nil
        }
        var name = file
        segment = 0
        if let dot = name.firstIndex(of: ".") {
            guard let seg = Self.number(name[name.index(after: dot)...]), seg > 0 else { return nil }
            segment = seg
            name = name[..<dot]
        }
        fork = .main
        if let us = name.firstIndex(of: "_") {
            switch name[name.index(after: us)...] {
            case "fsm": fork = .fsm
            case "vm": fork = .vm
            case "init": fork = .initialization
            default: return nil
            }
            name = name[..<us]
        }
        guard let rel = Self.number(name), rel > 0 else { return nil }
        relfilenode = rel
    }

    /// A decimal number without sign or leading zeros, as PostgreSQL writes OIDs.
    static func number(_ s: Substring) -> UInt32? {
        guard !s.isEmpty, s.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), s.first != "0" || s.count == 1 else { return nil }
        return UInt32(s)
    }

    /// The path of this relation's `_init` fork (present only for unlogged relations), given this
    /// file's path.
    public static func initForkPath(of path: String) -> String {
        var p = Substring(path)
        let slash = p.lastIndex(of: "/").map { p.index(after: $0) } ?? p.startIndex
        if let dot = p[slash...].firstIndex(of: ".") { p = p[..<dot] }
        if let us = p[slash...].firstIndex(of: "_") { p = p[..<us] }
        return p + "_init"
    }
}
