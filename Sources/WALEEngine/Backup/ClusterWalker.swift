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
public final class ClusterWalker {
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
    private var stack: [(local: String, archive: String)] = []
    private var pending: [PlannedMember] = []
    private var pendingIndex = 0
    private var startedRoot = false
    public private(set) var tablespaces: [TablespaceSpec] = []
    /// Files left out because they vanished or are sockets/FIFOs.
    public private(set) var skipped = 0

    /// `root` is the data directory (absolute).
    public init(root: String, logger: Logger) {
        self.root = root.hasSuffix("/") ? String(root.dropLast()) : root
        self.logger = logger
    }

    /// The next member, or nil when the walk is complete.
    public func next() throws -> PlannedMember? {
        while true {
            if pendingIndex < pending.count {
                defer { pendingIndex += 1 }
                return pending[pendingIndex]
            }
            pending.removeAll(keepingCapacity: true)
            pendingIndex = 0
            if !startedRoot {
                startedRoot = true
                guard let st = POSIX.lstat(root), st.st_mode & S_IFMT == S_IFDIR else {
                    throw WALEError(.user, "\(root) is not a directory")
                }
                pending.append(PlannedMember(entry: entry("", .directory, st), localPath: root))
                stack.append((root, ""))
                continue
            }
            guard let (local, archive) = stack.popLast() else { return nil }
            try scan(local: local, archive: archive)
        }
    }

    private func entry(_ name: String, _ kind: TarEntry.Kind, _ st: stat) -> TarEntry {
        var e = TarEntry(
            name: name, kind: kind, size: kind == .file ? Int64(st.st_size) : 0, mode: UInt32(st.st_mode & 0o7777),
            mtime: Int64(st.st_mtim.tv_sec))
        e.uid = st.st_uid
        e.gid = st.st_gid
        return e
    }

    private func scan(local: String, archive: String) throws {
        let names: [String]
        do {
            names = try POSIX.listDirectory(local).sorted()
        } catch let e as WALEError where e.kind == .notFound {
            return  // dropped while we walked (e.g. DROP DATABASE): WAL replay agrees
        }
        let top = archive.isEmpty
        var subdirs: [(String, String)] = []
        for name in names {
            let path = local + "/" + name
            let arch = archive + name
            if top && Self.topLevelExcludedFiles.contains(name) { continue }
            if name == "lost+found" { continue }
            guard let st = POSIX.lstat(path) else {
                skipped += 1
                continue
            }
            let type = st.st_mode & S_IFMT
            if type == S_IFLNK {
                if archive == "pg_tblspc/", let target = readLink(path), POSIX.isDirectory(path) {
                    // A tablespace: recorded in the spec, walked through the link, link itself not stored.
                    let loc = target.hasSuffix("/") ? target : target + "/"
                    tablespaces.append(TablespaceSpec(oid: name, loc: loc, link: "pg_tblspc/" + name))
                    subdirs.append((path, arch + "/"))
                    continue
                }
                pending.append(PlannedMember(entry: entry(arch, .symlink(target: readLink(path) ?? ""), st), localPath: path))
            } else if type == S_IFDIR {
                pending.append(PlannedMember(entry: entry(arch, .directory, st), localPath: path))
                if (top && Self.topLevelNoDescend.contains(name)) || Self.noDescend.contains(name) { continue }
                subdirs.append((path, arch + "/"))
            } else if type == S_IFREG {
                pending.append(PlannedMember(entry: entry(arch, .file, st), localPath: path))
            } else {
                skipped += 1
                logger.warning("skipping \(path): not a regular file, directory or symbolic link")
            }
        }
        // Depth first, in name order: push in reverse so the smallest name is scanned next.
        for d in subdirs.reversed() { stack.append(d) }
    }

    func readLink(_ path: String) -> String? {
        var buf = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buf, buf.count - 1)
        guard n >= 0 else { return nil }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
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

    let walker: ClusterWalker
    let targetBytes: Int64
    private var carry: PlannedMember?
    public private(set) var expandedSize: Int64 = 0
    public private(set) var fileCount = 0

    public init(walker: ClusterWalker, targetBytes: Int64 = Partitioner.defaultTargetBytes) {
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
            members.append(m)
            bytes += m.entry.size
            if m.entry.kind == .file { fileCount += 1 }
        }
        expandedSize += bytes
        return members.isEmpty ? nil : members
    }
}
