#if canImport(Glibc)
import Glibc
#endif
import WALECodec
import WALECore
import WALEStorage

/// Downloads one archived WAL file to a local path: whichever codec wrote it, decoded and
/// checked (codec checksums; for segments, size and page header; the content against the digest
/// wal-push recorded, where the store keeps metadata), visible only when complete.
public struct WALDownloader: Sendable {
    public let store: any ObjectStore
    public let prefix: StoragePrefix
    /// The codec tried first; the others are tried after it.
    public let preferred: Compression

    public init(store: any ObjectStore, prefix: StoragePrefix, preferred: Compression) {
        self.store = store
        self.prefix = prefix
        self.preferred = preferred
    }

    public var candidateSuffixes: [String] {
        [preferred.suffix] + Compression.allCases.filter { $0 != preferred }.map(\.suffix)
    }

    /// Fetches `name` into `target`. Throws `.notFound` only when no object exists under any suffix.
    /// Returns the segment size for segment files (from their verified page header).
    @discardableResult
    public func download(name: String, to target: String, durable: Bool) async throws -> WALSegmentSize? {
        for suffix in candidateSuffixes {
            let key = prefix.walKey(name, suffix: suffix)
            do {
                return try await store.read(key) { src in
                    try await write(src, name: name, key: key, to: target, durable: durable)
                }
            } catch let e as WALEError where e.kind == .notFound {
                continue
            }
        }
        throw WALEError(.notFound, "\(name) is not in the archive", detail: "no object \(prefix.walKey(name, suffix: ".*"))")
    }

    /// Reads the object `key` holding `name`, decoded and checked as `download` checks it, and
    /// writes nothing (verify, wal-verify --integrity).
    public func check(key: String, name: String) async throws {
        try await store.read(key) { src in
            let decoded = Decoded(src, key: key)
            var head: [UInt8] = []
            var size: UInt64 = 0
            while let chunk = try await decoded.source.next() {
                if head.count < WALPageHeader.length { head += chunk.prefix(WALPageHeader.length - head.count) }
                size += UInt64(chunk.count)
            }
            _ = try checkedSegmentSize(head, fileSize: size, name: name, key: key)
            try decoded.checkDigest()
        }
    }

    /// An archived object decoded, and hashed when its metadata (read with it: the GET's headers)
    /// records the digest wal-push took of the file it read: the end-to-end check, from the file in
    /// pg_wal to the bytes a restore is given, which no codec checksum (made after the read) is.
    struct Decoded {
        let source: any ByteSource
        private let digesting: DigestingSource?
        private let recorded: ContentDigest?
        private let key: String

        init(_ src: any ByteSource, key: String) {
            let plain = TransformedSource(src, AutoDecoder(name: key))
            recorded = (src as? any ObjectMetadataSource).flatMap { WALPush.digest(in: $0.metadata) }
            digesting = recorded.map { DigestingSource(plain, algorithm: $0.algorithm) }
            source = digesting ?? plain
            self.key = key
        }

        /// Call once the source is drained.
        func checkDigest() throws {
            guard let recorded, let now = digesting?.contentDigest(), now != recorded else { return }
            throw WALEError(
                .corrupt, "archived object \(key) does not hold the bytes wal-push archived",
                detail: "recorded at push: \(recorded); decoded now: \(now)")
        }
    }

    /// The key under which `name` is archived (the preferred codec's first), nil when none is.
    public func locate(_ name: String) async throws -> String? {
        try await WALPush.firstExisting(candidateSuffixes.map { prefix.walKey(name, suffix: $0) }, in: store)?.key
    }

    /// For a segment file, its size from its page header, which must be valid for its name.
    private func checkedSegmentSize(_ head: [UInt8], fileSize: UInt64, name: String, key: String) throws -> WALSegmentSize? {
        guard let seg = WALFileName(name)?.segmentFile else { return nil }
        switch WALPageHeader.validate(head, fileSize: fileSize, name: seg) {
        case .failure(let p):
            throw WALEError(.corrupt, "archived object \(key) does not hold the WAL segment \(name)", detail: p.description)
        case .success(let h):
            return h.segmentSize
        }
    }

    private func write(
        _ src: any ByteSource, name: String, key: String, to target: String, durable: Bool
    ) async throws -> WALSegmentSize? {
        let decoded = Decoded(src, key: key)
        let writer: AtomicFileWriter
        AtomicFileWriter.removeDeadTemporaries(of: target)
        do {
            writer = try AtomicFileWriter(path: target, writeBehind: durable)
        } catch let e as WALEError {
            throw Self.local(e)
        }
        defer { writer.abort() }
        var head: [UInt8] = []
        while let chunk = try await decoded.source.next() {
            if head.count < WALPageHeader.length { head += chunk.prefix(WALPageHeader.length - head.count) }
            do { try writer.write(chunk) } catch let e as WALEError { throw Self.local(e) }
        }
        let size = try checkedSegmentSize(head, fileSize: UInt64(writer.bytesWritten), name: name, key: key)
        try decoded.checkDigest()  // before the file becomes visible
        do { try writer.commit(durable: durable) } catch let e as WALEError { throw Self.local(e) }
        return size
    }

    /// A failure to write the restored file, which is no download failure. Never `.notFound`:
    /// that would tell PostgreSQL the file is not archived. A missing or unwritable directory is
    /// the user's to fix and a full disk is not retried (POSIX.error), so neither is downloaded
    /// again and again; other errors stay retryable I/O.
    static func local(_ e: WALEError) -> WALEError {
        var out = e
        out.message = "cannot write the restored file"
        out.detail = e.message
        if e.kind == .notFound || e.kind == .user {
            out.kind = .user
            out.hint = "the destination's directory must exist and be writable by this user"
        } else if e.kind != .io {
            out.kind = .io
        }
        return out
    }
}

/// The prefetch area beside `%p`: `<dir>/.wal-e/prefetch/<seg>` for complete, verified segments
/// and `<dir>/.wal-e/prefetch/running/<seg>/` (holding the downloader's pid) for downloads in flight.
public struct PrefetchDirectory: Sendable {
    public let base: String
    public var root: String { base + "/.wal-e/prefetch" }
    public var running: String { root + "/running" }

    public init(base: String) { self.base = base }

    public func ready(_ name: String) -> String { root + "/" + name }
    public func claim(_ name: String) -> String { running + "/" + name }

    public func create() throws {
        try POSIX.makeDirectories(running, mode: 0o700)
    }

    /// Whether the download of `name` has an owner that is still alive.
    public func isRunning(_ name: String) -> Bool {
        let dir = claim(name)
        guard let st = POSIX.stat(dir) else { return false }
        if let text = POSIX.readSmallFile(dir + "/pid"), let pid = Int32(text.trimmingWhitespace()) {
            return kill(pid, 0) == 0 || errno == EPERM
        }
        // Just created, pid not written yet: alive for a short grace period.
        return POSIX.now() - POSIX.mtime(st) < 5
    }

    /// Bytes downloaded so far by a running download (all files in its directory).
    public func runningBytes(_ name: String) -> Int64 {
        let dir = claim(name)
        guard let names = try? POSIX.listDirectory(dir) else { return -1 }
        return names.reduce(0) { $0 + Int64(POSIX.stat(dir + "/" + $1)?.st_size ?? 0) }
    }

    public func removeClaim(_ name: String) {
        let dir = claim(name)
        for n in (try? POSIX.listDirectory(dir)) ?? [] { unlink(dir + "/" + n) }
        rmdir(dir)
    }

    /// Removes prefetched segments and dead downloads not in `keep`.
    public func clear(except keep: Set<String>) {
        for n in (try? POSIX.listDirectory(root)) ?? [] where n != "running" && !keep.contains(n) {
            unlink(ready(n))
        }
        for n in (try? POSIX.listDirectory(running)) ?? [] where !keep.contains(n) && !isRunning(n) {
            removeClaim(n)
        }
    }
}
