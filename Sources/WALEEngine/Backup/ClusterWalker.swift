#if canImport(Glibc)
import Glibc
#endif
import WALECodec
import WALECore
import WALEStorage

/// One file-system object to put in a backup, as seen when the cluster was scanned.
public struct PlannedMember: Sendable {
    public var entry: TarEntry
    /// Where to read it (files) on the local file system.
    public var localPath: String
    /// For an incremental backup's changed-blocks member (`entry` names the member): which
    /// blocks of the file to store, and the file's size.
    public var delta: (blocks: [UInt32], fileSize: Int64)? = nil
    /// The nanoseconds of a file's modification time (the tar header has whole seconds only);
    /// manifests record them for the modification-time rules (ManifestEntry.unchangedSince).
    public var mtimeNanos: Int64 = 0
}

/// Where a backup's members come from: the cluster walked (a full backup), or the walk filtered
/// to what changed since the parent (an incremental).
public protocol MemberSource: AnyObject {
    func next() throws -> PlannedMember?
}

/// A tablespace as WAL-E's sentinel `spec` describes it.
public struct TablespaceSpec: Sendable, Equatable {
    public var oid: String
    /// The symlink's raw target with `/` appended.
    public var loc: String
    /// `pg_tblspc/<oid>`, relative to the data directory.
    public var link: String
}

/// Walks a data directory with WAL-E's rules (what is left out, what is kept only as an empty
/// directory, tablespaces followed through `pg_tblspc`), one directory at a time, so memory does
/// not grow with the number of files.
public final class ClusterWalker: MemberSource {
    /// Top-level directories kept as (empty) entries but not descended.
    public static let topLevelNoDescend: Set<String> = ["pg_xlog", "pg_wal", "pg_log", "pg_replslot"]
    /// Directories at any depth kept as entries but not descended.
    public static let noDescend: Set<String> = ["pgsql_tmp", "pg_stat_tmp", ".wal-e"]
    /// Top-level files never backed up. `backup_label` and `tablespace_map` come from pg_backup_stop.
    /// `standby.signal` and `recovery.signal` (PostgreSQL 12+) are left out as pgBackRest and
    /// WAL-G leave them out: a backup taken on a standby would otherwise restore as a standby
    /// (streaming from the old primary through the `primary_conninfo` it carries) instead of
    /// recovering to its target; backup-fetch writes the recovery.signal a restore needs.
    /// `postgresql.auto.conf.tmp` is ALTER SYSTEM's half-written file.
    public static let topLevelExcludedFiles: Set<String> = [
        "postmaster.pid", "postmaster.opts", "postgresql.conf", "pg_hba.conf", "pg_ident.conf", "recovery.conf",
        "recovery.done", "promote", "backup_label", "tablespace_map", "standby.signal", "recovery.signal",
        "postgresql.auto.conf.tmp",
    ]

    let root: String
    let logger: Logger
    /// Directories still to walk, the next one last.
    private var stack: [(local: String, archive: String)] = []
    /// The directory being read: its entries are taken one at a time from readdir, so memory does
    /// not grow with the number of files in it (a database with a million relations); only its
    /// subdirectories are kept, to be walked once it is done.
    private var current: (dir: OpaquePointer, local: String, archive: String, subdirs: [(String, String)])?
    private var startedRoot = false
    public private(set) var tablespaces: [TablespaceSpec] = []
    /// Files left out because they vanished or are sockets/FIFOs.
    public private(set) var skipped = 0

    /// `root` is the data directory (absolute).
    public init(root: String, logger: Logger) {
        self.root = root.hasSuffix("/") ? String(root.dropLast()) : root
        self.logger = logger
    }

    deinit { if let c = current { closedir(c.dir) } }

    /// The next member, or nil when the walk is complete. Members come in each directory's own
    /// order (readdir's, as WAL-E's os.walk), a directory's entries before its subdirectories'.
    public func next() throws -> PlannedMember? {
        if !startedRoot {
            startedRoot = true
            guard let st = POSIX.lstat(root), st.st_mode & S_IFMT == S_IFDIR else {
                throw WALEError(.user, "\(root) is not a directory")
            }
            stack.append((root, ""))
            return PlannedMember(entry: entry("", .directory, st), localPath: root)
        }
        while true {
            if current == nil {
                guard let (local, archive) = stack.popLast() else { return nil }
                guard let d = opendir(local) else {
                    if errno == ENOENT { continue }  // dropped while we walked (e.g. DROP DATABASE): WAL replay agrees
                    throw POSIX.error("list directory", local)
                }
                current = (d, local, archive, [])
            }
            guard let e = readdir(current!.dir) else {
                let done = current!
                closedir(done.dir)
                current = nil
                // Depth first: push in reverse so the first subdirectory found is walked next.
                for d in done.subdirs.reversed() { stack.append(d) }
                continue
            }
            let name = withUnsafeBytes(of: e.pointee.d_name) { p in String(decoding: p.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if name == "." || name == ".." { continue }
            if let m = consider(name) { return m }
        }
    }

    /// The member for `name` in the current directory, if it belongs in the backup.
    private func consider(_ name: String) -> PlannedMember? {
        let (local, archive) = (current!.local, current!.archive)
        let path = local + "/" + name
        let arch = archive + name
        let top = archive.isEmpty
        if top && Self.topLevelExcludedFiles.contains(name) { return nil }
        if name == "lost+found" { return nil }
        guard let st = POSIX.lstat(path) else {
            skipped += 1
            return nil
        }
        let type = st.st_mode & S_IFMT
        if type == S_IFLNK {
            if archive == "pg_tblspc/", let target = readLink(path), POSIX.isDirectory(path) {
                // A tablespace: recorded in the spec, walked through the link, link itself not stored.
                let loc = target.hasSuffix("/") ? target : target + "/"
                tablespaces.append(TablespaceSpec(oid: name, loc: loc, link: "pg_tblspc/" + name))
                current!.subdirs.append((path, arch + "/"))
                return nil
            }
            return PlannedMember(entry: entry(arch, .symlink(target: readLink(path) ?? ""), st), localPath: path)
        } else if type == S_IFDIR {
            if !((top && Self.topLevelNoDescend.contains(name)) || Self.noDescend.contains(name)) {
                current!.subdirs.append((path, arch + "/"))
            }
            return PlannedMember(entry: entry(arch, .directory, st), localPath: path)
        } else if type == S_IFREG {
            return PlannedMember(entry: entry(arch, .file, st), localPath: path, mtimeNanos: Int64(st.st_mtim.tv_nsec))
        }
        skipped += 1
        logger.warning("skipping \(path): not a regular file, directory or symbolic link")
        return nil
    }

    private var owners = TarOwner.Names()

    private func entry(_ name: String, _ kind: TarEntry.Kind, _ st: stat) -> TarEntry {
        var e = TarEntry(
            name: name, kind: kind, size: kind == .file ? Int64(st.st_size) : 0, mode: UInt32(st.st_mode & 0o7777),
            mtime: Int64(st.st_mtim.tv_sec))
        owners.owner(uid: st.st_uid, gid: st.st_gid).apply(to: &e)
        return e
    }

    func readLink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buf, buf.count - 1)
        guard n >= 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Owner ids and names of a tar member, as WAL-E's tarfile writes them (GNU tar extracting as
/// root uses the names first, then the ids).
public struct TarOwner: Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public var uname: String
    public var gname: String

    public func apply(to e: inout TarEntry) {
        e.uid = uid
        e.gid = gid
        e.uname = uname
        e.gname = gname
    }

    /// The owner of `path` (root's when it cannot be read).
    public static func of(_ path: String) -> TarOwner {
        var names = Names()
        guard let st = POSIX.stat(path) else { return names.owner(uid: 0, gid: 0) }
        return names.owner(uid: st.st_uid, gid: st.st_gid)
    }

    /// User and group names looked up once per id (a cluster has one owner).
    public struct Names {
        private var users: [UInt32: String] = [:]
        private var groups: [UInt32: String] = [:]
        public init() {}

        public mutating func owner(uid: UInt32, gid: UInt32) -> TarOwner {
            if users[uid] == nil { users[uid] = getpwuid(uid).map { String(cString: $0.pointee.pw_name) } ?? "" }
            if groups[gid] == nil { groups[gid] = getgrgid(gid).map { String(cString: $0.pointee.gr_name) } ?? "" }
            return TarOwner(uid: uid, gid: gid, uname: users[uid]!, gname: groups[gid]!)
        }
    }
}

/// Groups walked members into WAL-E's partitions: consecutive runs of at most 1.5 GiB of member
/// data and at most 6144 members (WAL-E's limits). Partitions are cut earlier, at `targetBytes`
/// (128 MiB by default), so that a cluster smaller than 1.5 GiB still uploads and restores in
/// parallel; WAL-E reads any number of partitions.
public final class Partitioner {
    public static let maxBytes: Int64 = 1_610_612_736
    public static let maxMembers = 6144
    public static let defaultTargetBytes: Int64 = 128 << 20

    let walker: any MemberSource
    let targetBytes: Int64
    private var carry: PlannedMember?
    public private(set) var expandedSize: Int64 = 0
    public private(set) var fileCount = 0

    public init(walker: any MemberSource, targetBytes: Int64 = Partitioner.defaultTargetBytes) {
        self.walker = walker
        self.targetBytes = min(max(1, targetBytes), Self.maxBytes)
    }

    public func nextPartition() throws -> [PlannedMember]? {
        var members: [PlannedMember] = []
        var bytes: Int64 = 0
        while true {
            guard let m = try carry ?? walker.next() else { break }
            carry = nil
            if m.entry.size > Self.maxBytes {
                throw WALEError(
                    .user, "Attempted to archive a file that is too large.", detail: "\(m.localPath) is \(m.entry.size) bytes",
                    hint: "files above \(Self.maxBytes) bytes (1.5 GiB) cannot be placed in a WAL-E tar partition")
            }
            if !members.isEmpty && (bytes + m.entry.size >= targetBytes || members.count >= Self.maxMembers) {
                carry = m
                break
            }
            // Grown by doubling, a partition of 6144 small files reallocated its array a dozen
            // times and ended at a capacity of 8192, a copy of the old array alive during each
            // move; once it has many members it gets room for the most it can hold.
            if members.count == 1024 { members.reserveCapacity(Self.maxMembers) }
            members.append(m)
            bytes += m.entry.size
            if m.entry.kind == .file { fileCount += 1 }
        }
        expandedSize += bytes
        return members.isEmpty ? nil : members
    }
}
