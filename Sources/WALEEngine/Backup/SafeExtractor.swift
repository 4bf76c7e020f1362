import CWALESupport
#if canImport(Glibc)
import Glibc
#endif
import WALECodec
import WALECore
import WALEStorage

/// Writes tar members under a restore root, refusing anything that would land outside it: absolute
/// names, `..`, and paths that traverse a symbolic link resolving outside the root and the
/// allowed tablespace locations. Files are written with their modes and hashed for the manifest.
public final class SafeExtractor: TarSink {
    let root: String
    let allowedRoots: [String]
    let partition: String
    /// The partition's manifest, when the backup has one.
    let matcher: ManifestMatcher?
    private var fd: Int32 = -1
    private var path = ""
    private var entry: TarEntry?
    private var written: Int64 = 0
    /// The nanoseconds of the open file's modification time, from the manifest (the tar header
    /// has seconds): a later `--delta-trust-mtime` restore compares the whole time.
    private var mtimeNanos = 0
    private var writeBehind = WriteBehind()
    /// Set while a large file is written around the page cache (O_DIRECT): see `directMinimum`.
    private var staging: DirectStaging?
    let aroundCache: Bool
    public private(set) var files = 0
    public private(set) var bytes: Int64 = 0
    /// Delta restore (`backup-fetch --delta`): every member's path is remembered so that what the
    /// backup lacks can be removed.
    let delta: Bool
    /// Files the delta restore found already in place (BackupFetch+Delta.swift): their stored bytes
    /// are checked against the manifest, not written (nor their changed blocks).
    let kept: Set<String>
    /// The member being read is such a kept file.
    private var keeping = false
    public private(set) var keptFiles = 0
    public private(set) var keptBytes: Int64 = 0
    /// Every member's normalised path (delta restores only).
    public private(set) var members: Set<String> = []
    /// Restoring one layer of an incremental chain: only the files whose copy this layer holds
    /// are written, changed blocks are written over files of earlier layers, and directories
    /// and links come from the newest layer alone (BackupFetch+Chain.swift).
    let layer: ChainLayer?
    /// The member is a file another layer provides: checked against the manifest, not written.
    private var skipping = false
    /// The member holds changed blocks for the open file.
    private var patch: DeltaMember.Parser?

    /// `root` and `allowedRoots` must be real paths (no symlinks). `expected` is the partition's
    /// manifest, when the backup has one.
    /// `global/pg_control` is written under this name and moved into place only once the whole
    /// backup is restored (as pgBackRest does): a restore that fails half way leaves a directory
    /// PostgreSQL refuses to start, never one it would start on and silently corrupt.
    public static let heldBackControlFile = "global/pg_control.wal-e-restoring"

    let progress: Progress?

    public init(
        root: String, allowedRoots: [String], partition: String, expected: [ManifestEntry]?, progress: Progress? = nil, delta: Bool = false,
        kept: Set<String> = [], layer: ChainLayer? = nil, aroundCache: Bool = false
    ) {
        self.aroundCache = aroundCache
        self.layer = layer
        self.kept = kept
        self.progress = progress
        self.delta = delta
        self.root = root
        self.allowedRoots = [root] + allowedRoots
        self.partition = partition
        self.matcher = expected.map { ManifestMatcher($0, partition: partition) }
    }

    deinit {
        staging?.waitForWrites()  // its writer thread may still be writing to fd
        if fd >= 0 { close(fd) }
    }

    /// With `aroundCache` (`RestoreWrites`), files at least this large are written with O_DIRECT
    /// where the file system allows; small files (most of a cluster's count) stay buffered.
    static let directMinimum: Int64 = 1 << 20

    func refuse(_ why: String, _ name: String) -> WALEError {
        WALEError(.corrupt, "refusing to extract \"\(name)\" from \(partition): \(why)", hint: "the archive may be damaged or hostile; nothing outside the restore directory was written")
    }

    func components(_ name: String) throws -> [String] {
        switch Self.memberComponents(name) {
        case .success(let parts): return parts
        case .failure(let why): throw refuse(why.reason, name)
        }
    }

    struct Refusal: Error { let reason: String }

    /// Normalises a member name to components below the root ([] = the root itself); an absolute
    /// name or one with `..` is refused (verify reports the same names as damage).
    static func memberComponents(_ name: String) -> Result<[String], Refusal> {
        if name == "/" || name == "." || name == "./" || name.isEmpty { return .success([]) }
        if name.hasPrefix("/") { return .failure(Refusal(reason: "absolute path")) }
        var parts: [String] = []
        for c in name.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == ".." { return .failure(Refusal(reason: "path contains ..")) }
            parts.append(String(c))
        }
        return .success(parts)
    }

    func isAllowed(_ real: String) -> Bool {
        allowedRoots.contains { real == $0 || real.hasPrefix($0.hasSuffix("/") ? $0 : $0 + "/") }
    }

    /// Makes sure every directory from the root down to `parts` exists and does not lead outside
    /// the allowed places; returns the directory's path.
    func ensureDirectory(_ parts: ArraySlice<String>, name: String) throws -> String {
        var p = root
        for c in parts {
            p += "/" + c
            if let st = POSIX.lstat(p) {
                switch st.st_mode & S_IFMT {
                case S_IFDIR: continue
                case S_IFLNK:
                    guard let real = POSIX.realPath(p), POSIX.isDirectory(real), isAllowed(real) else {
                        throw refuse("\(p) is a symbolic link leading outside the restore directory", name)
                    }
                default:
                    throw refuse("\(p) exists and is not a directory", name)
                }
            } else if mkdir(p, 0o700) != 0 && errno != EEXIST {
                throw POSIX.error("create directory", p)
            }
        }
        return p
    }

    public func begin(_ e: TarEntry) throws {
        let parts = try components(e.name)
        entry = e
        if delta { members.insert(parts.joined(separator: "/")) }
        if let layer, e.kind != .file, !layer.isNewest { return }
        switch e.kind {
        case .directory:
            let dir = try ensureDirectory(parts[...], name: e.name)
            if POSIX.lstat(dir).map({ $0.st_mode & S_IFMT == S_IFDIR }) == true {
                chmod(dir, mode_t(e.mode & 0o7777) | 0o700)
            }
        case .file:
            guard let last = parts.last else { throw refuse("a file cannot replace the restore directory", e.name) }
            let dir = try ensureDirectory(parts.dropLast(), name: e.name)
            path = dir + "/" + (parts == ["global", "pg_control"] ? "pg_control.wal-e-restoring" : last)
            if let st = POSIX.lstat(path), st.st_mode & S_IFMT != S_IFREG {
                if st.st_mode & S_IFMT == S_IFDIR { throw refuse("a directory is in the way", e.name) }
                unlink(path)
            }
            let relative = parts.joined(separator: "/")
            if kept.contains(DeltaMember.target(ofMember: relative) ?? relative) {
                keeping = true
                matcher?.begin(file: relative, mode: e.mode)
                written = 0
                return
            }
            if let layer {
                switch layer.plan.action(layer: layer.index, file: relative) {
                case .write:
                    break
                case .skip:
                    skipping = true
                    matcher?.begin(file: relative, mode: e.mode)
                    return
                case .patch:
                    let target = dir + "/" + String(last.dropFirst(DeltaMember.namePrefix.count))
                    guard let st = POSIX.lstat(target), st.st_mode & S_IFMT == S_IFREG else {
                        throw WALEError(
                            .corrupt, "\(relative) in \(partition) changes a file no earlier backup of the chain restored",
                            hint: "the chain is damaged; restore its full backup instead")
                    }
                    fd = try POSIX.open(target, O_WRONLY | O_NOFOLLOW, 0, what: "open")
                    path = target
                    patch = DeltaMember.Parser(name: relative)
                    matcher?.begin(file: relative, mode: e.mode)
                    written = 0
                    return
                }
            }
            fd = try POSIX.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0o600, what: "create")
            if aroundCache && e.size >= Self.directMinimum && wale_set_direct(fd, 1) == 0 { staging = DirectStaging() }
            mtimeNanos = Int(matcher?.expected[relative]?.mtimeNanos ?? 0)
            // Only files the manifest lists are hashed (WAL-E's backups have no manifest).
            matcher?.begin(file: parts.joined(separator: "/"), mode: e.mode)
            written = 0
            writeBehind = WriteBehind()
        case .symlink(let target):
            guard let last = parts.last else { throw refuse("a link cannot replace the restore directory", e.name) }
            let dir = try ensureDirectory(parts.dropLast(), name: e.name)
            let p = dir + "/" + last
            if let st = POSIX.lstat(p) {
                if st.st_mode & S_IFMT == S_IFDIR {
                    if rmdir(p) != 0 { throw refuse("a non-empty directory is in the way of a link", e.name) }
                } else {
                    unlink(p)
                }
            }
            if symlink(target, p) != 0 { throw POSIX.error("create symbolic link", p) }
        case .hardlink(let target):
            let tparts = try components(target)
            guard let last = parts.last, !tparts.isEmpty else { throw refuse("bad hard link", e.name) }
            let dir = try ensureDirectory(parts.dropLast(), name: e.name)
            let src = try ensureDirectory(tparts.dropLast(), name: target) + "/" + tparts.last!
            let p = dir + "/" + last
            unlink(p)
            if link(src, p) != 0 { throw POSIX.error("create hard link to \(src)", p) }
        case .other:
            break
        }
    }

    public func data(_ b: UnsafeRawBufferPointer) throws {
        if skipping {
            matcher?.update(b)
            return
        }
        if patch != nil {
            try patch!.feed(b) { offset, bytes in try writeAll(bytes, at: off_t(offset)) }
            account(b)
            return
        }
        if keeping {
            account(b)
            return
        }
        guard fd >= 0 else { return }
        if let staging {
            try staging.append(b, fd: fd, path: path)
            account(b)
            return
        }
        try writeAll(b, at: nil)
        account(b)
        writeBehind.wrote(fd: fd, upTo: written)
    }

    /// Writes all of `b` to the open file, at `offset` (pwrite) or where it stands (write).
    private func writeAll(_ b: UnsafeRawBufferPointer, at offset: off_t?) throws {
        var done = 0
        while done < b.count {
            let n = offset.map { pwrite(fd, b.baseAddress! + done, b.count - done, $0 + off_t(done)) } ?? write(fd, b.baseAddress! + done, b.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw POSIX.error("write", path)
            }
            done += n
        }
    }

    /// A member's bytes went by: checked against the manifest and counted.
    private func account(_ b: UnsafeRawBufferPointer) {
        matcher?.update(b)
        progress?.add(bytes: b.count)
        written += Int64(b.count)
    }

    public func end() throws {
        guard let e = entry else { return }
        entry = nil
        if skipping {
            skipping = false
            try matcher?.end()
            return
        }
        if let p = patch {
            patch = nil
            defer {
                close(fd)
                fd = -1
            }
            try p.finish()
            fchmod(fd, mode_t(e.mode & 0o7777))
            if ftruncate(fd, off_t(p.finalSize ?? 0)) != 0 { throw POSIX.error("truncate", path) }
            files += 1
            bytes += written
            try matcher?.end()
            return
        }
        if keeping {
            keeping = false
            if layer == nil {  // a chain counts its kept files once, not per layer
                files += 1
                keptFiles += 1
                keptBytes += written
            }
            try matcher?.end()
            return
        }
        guard e.kind == .file, fd >= 0 else { return }
        if let s = staging {
            staging = nil
            do { try s.finish(fd: fd, path: path) } catch {
                close(fd)
                fd = -1
                throw error
            }
        }
        fchmod(fd, mode_t(e.mode & 0o7777))
        var times = [timespec(tv_sec: Int(e.mtime), tv_nsec: mtimeNanos), timespec(tv_sec: Int(e.mtime), tv_nsec: mtimeNanos)]
        futimens(fd, &times)
        let rc = close(fd)
        fd = -1
        if rc != 0 { throw POSIX.error("close", path) }
        files += 1
        bytes += written
        try matcher?.end()
    }

    /// After the whole partition: every file the manifest lists must have been restored.
    public func checkComplete() throws {
        try matcher?.checkComplete()
    }
}
