#if canImport(Glibc)
import Glibc
#endif
import WALECore

/// The `file://` backend: objects are files under `root` (`file://host/abs/path`, host ignored).
///
/// Writes go to a hidden temporary file, are fsynced, then renamed (or hard-linked, for
/// if-absent writes) into place, and the directory is fsynced. Deletes prune directories
/// left empty, up to `pruneStop`.
public struct FileStore: ObjectStore {
    public let root: String
    public let pruneStop: String
    static let temporaryPrefix = ".wal-e-tmp."

    /// `root` is the file-system directory keys are relative to ("/" for WAL-E's layout, where
    /// keys carry the whole path); directories at or above `pruneStop` are never removed.
    public init(root: String = "/", pruneStop: String = "/") {
        self.root = root.hasSuffix("/") ? root : root + "/"
        self.pruneStop = pruneStop.count > 1 && pruneStop.hasSuffix("/") ? String(pruneStop.dropLast()) : pruneStop
    }

    func path(_ key: String) -> String { root + key }

    public func info(_ key: String) async throws -> ObjectInfo? {
        guard let st = POSIX.stat(path(key)), st.st_mode & S_IFMT == S_IFREG else { return nil }
        return ObjectInfo(key: key, size: Int64(st.st_size), lastModified: POSIX.mtime(st))
    }

    public func read<R>(_ key: String, _ body: (any ByteSource) async throws -> R) async throws -> R {
        let source: LocalFileSource
        do {
            source = try LocalFileSource(path: path(key))
        } catch let e as WALEError where e.kind == .notFound {
            throw WALEError(.notFound, "object \(key) does not exist", detail: "no file \(path(key))")
        }
        return try await body(source)
    }

    public func write(_ key: String, from source: any ByteSource, options: WriteOptions) async throws -> WriteOutcome {
        let target = path(key)
        try POSIX.makeDirectories(POSIX.dirname(target))
        // An archived object is read back only at restore time: write it around the page cache
        // (see AtomicFileWriter); only durable writes, which are fsynced anyway.
        let writer = try AtomicFileWriter(
            path: target, mode: 0o666, temporaryPrefix: Self.temporaryPrefix, writeBehind: options.durable, direct: options.durable)
        defer { writer.abort() }
        try await writer.write(from: source)
        if let gate = options.gate, try await !gate.mayProceed() { return .alreadyExists }
        if options.ifAbsent {
            return try writer.commitIfAbsent(durable: options.durable) ? .created : .alreadyExists
        }
        try writer.commit(durable: options.durable)
        return .created
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        // Walk from the deepest directory the prefix names completely.
        let dirKey = prefix.contains("/") ? String(prefix[...prefix.lastIndex(of: "/")!]) : ""
        var out: [ObjectInfo] = []
        try walk(dirKey, prefix: prefix, into: &out)
        return out
    }

    private func walk(_ dirKey: String, prefix: String, into out: inout [ObjectInfo]) throws {
        let names: [String]
        do {
            names = try POSIX.listDirectory(path(dirKey).isEmpty ? "." : path(dirKey))
        } catch let e as WALEError where e.kind == .notFound {
            return
        }
        for name in names where !name.hasPrefix(Self.temporaryPrefix) {
            let key = dirKey + name
            guard let st = POSIX.lstat(path(key)) else { continue }
            let type = st.st_mode & S_IFMT
            if type == S_IFDIR {
                let sub = key + "/"
                if sub.hasPrefix(prefix) || prefix.hasPrefix(sub) { try walk(sub, prefix: prefix, into: &out) }
            } else if type == S_IFREG && key.hasPrefix(prefix) {
                out.append(ObjectInfo(key: key, size: Int64(st.st_size), lastModified: POSIX.mtime(st)))
            }
        }
    }

    public func delete(_ keys: [String]) async throws {
        for key in keys {
            let p = path(key)
            try POSIX.unlinkIfPresent(p)
            pruneEmptyParents(of: p)
        }
    }

    private func pruneEmptyParents(of p: String) {
        var dir = POSIX.dirname(p)
        let stop = pruneStop == "/" ? "/" : pruneStop + "/"
        while dir.count > pruneStop.count, (dir + "/").hasPrefix(stop), dir != "/" {
            if rmdir(dir) != 0 { return }
            dir = POSIX.dirname(dir)
        }
    }
}
