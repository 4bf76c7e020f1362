#if canImport(Glibc)
import Glibc
#endif
import WALECore

/// The `file://` backend: objects are files under `root` (`file://host/abs/path`, host ignored).
///
/// Writes go to a hidden temporary file, are fsynced, then renamed (or hard-linked, for
/// if-absent writes) into place, and the directory is fsynced. Deletes prune directories
/// left empty, up to `pruneStop`. Object metadata (wal-push's content digest) is kept as the
/// file's user extended attributes, set before the file appears, where the file system has them.
public struct FileStore: ObjectStore {
    public let root: String
    public let pruneStop: String
    static let temporaryPrefix = ".wal-e-tmp."
    /// Objects are written in this subdirectory of their directory, then moved into place: a
    /// writer killed part way leaves its file there, where the next write to that directory
    /// finds it without listing the directory itself (a wal_005 of 100,000 segments), and
    /// removes it once it is older than `staleAge`. The subdirectory goes when it is empty.
    static let temporaryDirectory = ".wal-e-tmp.d"
    /// A temporary untouched for this long belongs to a writer that died (a live one writes to
    /// it continuously, and no single object takes an hour between two writes).
    static let staleAge: Double = 3600

    /// `root` is the file-system directory keys are relative to ("/" for WAL-E's layout, where
    /// keys carry the whole path); directories at or above `pruneStop` are never removed.
    public init(root: String = "/", pruneStop: String = "/") {
        self.root = root.hasSuffix("/") ? root : root + "/"
        self.pruneStop = pruneStop.count > 1 && pruneStop.hasSuffix("/") ? String(pruneStop.dropLast()) : pruneStop
    }

    func path(_ key: String) -> String { root + key }

    /// Kept as user extended attributes (ext4, xfs, btrfs, tmpfs from Linux 6.6). Where the file
    /// system has none they are silently absent, and the engine decides as for an object WAL-E
    /// wrote (a repeated push reads the object back; a restore has no digest to check). Copies
    /// made without `-X`/`--xattrs` lose them the same way.
    public var storesLateMetadata: Bool { true }

    public func info(_ key: String) async throws -> ObjectInfo? {
        let p = path(key)
        guard let (st, meta) = FileWatchdog.shared.guarded("stat \(key)", { POSIX.stat(p).map { ($0, POSIX.userAttributes(path: p)) } }),
            st.st_mode & S_IFMT == S_IFREG
        else { return nil }
        return ObjectInfo(key: key, size: Int64(st.st_size), lastModified: POSIX.mtime(st), metadata: meta)
    }

    public func read<R>(_ key: String, _ body: (any ByteSource) async throws -> R) async throws -> R {
        let watch = FileWatchdog.shared.begin("reading \(key)")
        defer { FileWatchdog.shared.end(watch) }
        let source: LocalFileSource
        do {
            source = try LocalFileSource(path: path(key))
        } catch let e as WALEError where e.kind == .notFound {
            throw WALEError(.notFound, "object \(key) does not exist", detail: "no file \(path(key))")
        }
        return try await body(FileObjectSource(WatchedSource(source, id: watch, side: .reading), metadata: source.userAttributes()))
    }

    public func write(_ key: String, from source: any ByteSource, options: WriteOptions) async throws -> WriteOutcome {
        let watch = FileWatchdog.shared.begin("writing \(key)")
        defer { FileWatchdog.shared.end(watch) }
        let target = path(key)
        let dir = POSIX.dirname(target)
        let tmpdir = dir + "/" + Self.temporaryDirectory
        sweepStaleTemporaries(tmpdir)
        // An archived object is read back only at restore time: write it around the page cache
        // (see AtomicFileWriter); only durable writes, which are fsynced anyway.
        var made: AtomicFileWriter?
        for attempt in 0..<3 {
            try POSIX.makeDirectories(tmpdir)
            do {
                made = try AtomicFileWriter(
                    path: target, mode: 0o666, temporaryPrefix: Self.temporaryDirectory + "/" + Self.temporaryPrefix,
                    writeBehind: options.durable, direct: options.durable)
                break
            } catch let e as WALEError where e.kind == .notFound && attempt < 2 {
                continue  // another writer removed the empty subdirectory in between
            }
        }
        guard let writer = made else { throw WALEError(.io, "cannot create a temporary file in \(tmpdir)") }
        defer {
            writer.abort()
            rmdir(tmpdir)  // only when empty: other writers' files keep it
        }
        try await writer.write(from: WatchedSource(source, id: watch, side: .writing))
        let metadata = options.metadata.merging(options.lateMetadata?.value() ?? [:]) { $1 }
        if !metadata.isEmpty { writer.setUserAttributes(metadata) }  // best effort: see storesLateMetadata
        FileWatchdog.shared.pause(watch)  // the gate may ask the store about other names
        if let gate = options.gate, try await !gate.mayProceed() { return .alreadyExists }
        FileWatchdog.shared.resume(watch)
        if options.ifAbsent {
            return try writer.commitIfAbsent(durable: options.durable) ? .created : .alreadyExists
        }
        try writer.commit(durable: options.durable)
        return .created
    }

    /// Removes temporaries left by writers that died (see `temporaryDirectory`).
    func sweepStaleTemporaries(_ tmpdir: String) {
        guard let names = try? POSIX.listDirectory(tmpdir) else { return }
        let now = POSIX.now()
        for name in names where name.hasPrefix(Self.temporaryPrefix) {
            let p = tmpdir + "/" + name
            if let st = POSIX.lstat(p), st.st_mode & S_IFMT == S_IFREG, now - POSIX.mtime(st) > Self.staleAge { unlink(p) }
        }
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        // Walk from the deepest directory the prefix names completely.
        let dirKey = prefix.contains("/") ? String(prefix[...prefix.lastIndex(of: "/")!]) : ""
        var out: [ObjectInfo] = []
        let watch = FileWatchdog.shared.begin("listing \(prefix)")
        defer { FileWatchdog.shared.end(watch) }
        try walk(dirKey, prefix: prefix, into: &out, watch: watch)
        return out
    }

    private func walk(_ dirKey: String, prefix: String, into out: inout [ObjectInfo], watch: Int) throws {
        let names: [String]
        do {
            names = try POSIX.listDirectory(path(dirKey).isEmpty ? "." : path(dirKey))
        } catch let e as WALEError where e.kind == .notFound {
            return
        }
        for name in names where !name.hasPrefix(Self.temporaryPrefix) {
            let key = dirKey + name
            FileWatchdog.shared.progress(watch)
            guard let st = POSIX.lstat(path(key)) else { continue }
            let type = st.st_mode & S_IFMT
            if type == S_IFDIR {
                let sub = key + "/"
                if sub.hasPrefix(prefix) || prefix.hasPrefix(sub) { try walk(sub, prefix: prefix, into: &out, watch: watch) }
            } else if type == S_IFREG && key.hasPrefix(prefix) {
                out.append(ObjectInfo(key: key, size: Int64(st.st_size), lastModified: POSIX.mtime(st)))
            }
        }
    }

    public func delete(_ keys: [String]) async throws {
        let watch = FileWatchdog.shared.begin("deleting \(keys.first ?? "")…")
        defer { FileWatchdog.shared.end(watch) }
        for key in keys {
            let p = path(key)
            try POSIX.unlinkIfPresent(p)
            pruneEmptyParents(of: p)
            FileWatchdog.shared.progress(watch)
        }
    }

    private func pruneEmptyParents(of p: String) {
        var dir = POSIX.dirname(p)
        let stop = pruneStop == "/" ? "/" : pruneStop + "/"
        while dir.count > pruneStop.count, (dir + "/").hasPrefix(stop), dir != "/" {
            rmdir(dir + "/" + Self.temporaryDirectory)
            if rmdir(dir) != 0 { return }
            dir = POSIX.dirname(dir)
        }
    }
}

/// A file object being read, with its metadata (its user extended attributes).
final class FileObjectSource: ObjectMetadataSource {
    let inner: any ByteSource
    let metadata: [String: String]
    init(_ inner: any ByteSource, metadata: [String: String]) {
        self.inner = inner
        self.metadata = metadata
    }
    func next() async throws -> [UInt8]? { try await inner.next() }
}
