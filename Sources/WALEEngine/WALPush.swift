import CWALESupport
#if canImport(Glibc)
import Glibc
#endif
import WALECodec
import WALECore
import WALEStorage

/// `wal-push %p`: archive one WAL file (plus, with a pool, other `.ready` segments), never
/// overwriting an archived object with different bytes.
public struct WALPush: Sendable {
    public let store: any ObjectStore
    public let prefix: StoragePrefix
    public let compression: Compression
    public let logger: Logger
    /// Files archived per call: `%p` plus up to `poolSize - 1` other `.ready` segments (WAL-E's
    /// meaning of the pool).
    public let poolSize: Int
    /// Of those, how many are read, compressed and written at once. For a remote store, the whole
    /// pool (the wait is the network's); for a local disk, a few per core: the work is the CPU's
    /// and the disk's, and more streams would only hold more buffers.
    public let streams: Int
    /// Encryption of new objects (gpg or native); clear by default.
    public var sealing = Sealing.clear

    public init(store: any ObjectStore, prefix: StoragePrefix, compression: Compression, logger: Logger, poolSize: Int, streams: Int? = nil) {
        self.store = store
        self.prefix = prefix
        self.compression = compression
        self.logger = logger
        self.poolSize = max(1, poolSize)
        self.streams = max(1, min(self.poolSize, streams ?? self.poolSize))
    }

    /// Streams for a store on the local disk: two per core.
    public static var localStreams: Int { 2 * Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    public enum Outcome: Sendable, Equatable {
        case uploaded
        /// The archive already had this file with identical content.
        case alreadyArchived
    }

    /// Archives `path`; with `poolSize > 1` also archives the oldest other `.ready` segments in
    /// parallel. Only `path`'s result is returned. `path` is checked first (a WAL file name, a
    /// readable regular file, a valid header for a segment): a push that fails there touches no
    /// neighbour. `archive_status` is never touched: archived neighbours get a marker
    /// (`PushedMarkers`) once every upload has ended and `path`'s succeeded, and PostgreSQL's own
    /// call for each then succeeds at once and is counted in `pg_stat_archiver`. A failed
    /// neighbour is logged; PostgreSQL archives it itself.
    /// With `ahead` (asynchronous archiving), neighbours are left to a detached helper
    /// (`PushAhead.swift`) and the call returns once `path` is archived.
    public func run(path: String, ahead: Ahead? = nil) async throws -> Outcome {
        let own = try open(path: path)
        let markers = PushedMarkers(walDirectory: POSIX.dirname(path))
        if markers.matches(own.name, own.stat, prefix: prefix.raw) {
            markers.remove(own.name)
            logger.info(
                "WAL file was archived ahead by an earlier wal-push", detail: "\"\(path)\" is in \(prefix.raw) (pushed as a .ready neighbour); nothing uploaded.",
                ["action": "push-wal", "seg": own.name, "state": "skip"])
            return .alreadyArchived
        }
        if let ahead { return try await runAhead(own, markers: markers, ahead) }
        if poolSize > 1 { markers.sweep() }
        let neighbours = poolSize > 1 ? readyNeighbours(of: path, limit: poolSize - 1, skipping: markers) : []
        if neighbours.isEmpty { return try await push(own) }
        let width = min(streams, 1 + neighbours.count)
        let directory = POSIX.dirname(path)
        let (main, archived) = try await withThrowingTaskGroup(of: (Outcome?, String?).self) { group in
            var queue = neighbours[...]
            group.addTask { (try await push(own), nil) }
            for _ in 1..<width {
                guard let name = queue.popFirst() else { break }
                group.addTask { (nil, await pushNeighbour(directory: directory, name: name)) }
            }
            var main: Outcome?
            var archived: [String] = []
            while let (outcome, name) = try await group.next() {
                if let outcome { main = outcome }
                if let name { archived.append(name) }
                if let next = queue.popFirst() {
                    group.addTask { (nil, await pushNeighbour(directory: directory, name: next)) }
                }
            }
            return (main!, archived)
        }
        for name in archived { markers.record(name, prefix: prefix.raw) }
        return main
    }

    /// The oldest `archive_status/<24 hex>.ready` segments other than `path`'s and those already
    /// archived ahead (a marker), sorted.
    func readyNeighbours(of path: String, limit: Int, skipping markers: PushedMarkers) -> [String] {
        readySegments(in: POSIX.dirname(path), except: POSIX.basename(path), limit: limit, skipping: markers)
    }

    func readySegments(in dir: String, except own: String? = nil, limit: Int, skipping markers: PushedMarkers) -> [String] {
        guard let names = try? POSIX.listDirectory(dir + "/archive_status") else { return [] }
        let ready = names.compactMap { n -> String? in
            guard n.hasSuffix(".ready") else { return nil }
            let seg = String(n.dropLast(6))
            return WALSegmentName(seg) != nil && seg != own && !markers.exists(seg) ? seg : nil
        }
        return Array(ready.sorted().prefix(limit))
    }

    /// Uploads one `.ready` neighbour; its name when the upload is durable, nil (logged) if not.
    func pushNeighbour(directory: String, name: String) async -> String? {
        do {
            _ = try await push(path: directory + "/" + name)
            return name
        } catch let e as WALEError {
            logger.warning(
                "could not archive a .ready segment in the background", detail: e.description,
                hint: "PostgreSQL will archive \(name) itself; it stays .ready", ["seg": name])
        } catch {
            logger.warning("could not archive a .ready segment in the background", detail: "\(error)", ["seg": name])
        }
        return nil
    }

    /// A file checked and opened for archiving.
    struct OpenedFile: @unchecked Sendable {
        let path: String
        let name: String
        let source: LocalFileSource
        let size: Int64
        let mode: UInt32
        let mtime: UInt64
        let stat: stat
    }

    /// Checks `path` before anything is sent: a WAL file name, a readable regular file, and for a
    /// segment a valid first page header.
    func open(path: String) throws -> OpenedFile {
        let name = POSIX.basename(path)
        guard let kind = WALFileName(name) else {
            throw WALEError(
                .notWAL, "refusing to archive \"\(path)\": \(name) is not a WAL file name",
                hint: "wal-push archives only PostgreSQL's WAL segments, .partial, .backup and .history files")
        }
        let fd: Int32
        do {
            fd = try POSIX.open(path, O_RDONLY)
        } catch let e as WALEError {
            throw WALEError(
                .user, "could not find file for wal-push", detail: e.message,
                hint: "the path must name a file PostgreSQL asked to archive (%p) and be readable by this user")
        }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw WALEError(.notWAL, "refusing to archive \"\(path)\": not a regular file")
        }
        let source = LocalFileSource(fd: fd, path: path)  // owns fd from here
        if let seg = kind.segmentFile {
            try checkHeader(fd: fd, path: path, size: UInt64(st.st_size), name: seg)
        }
        return OpenedFile(path: path, name: name, source: source, size: Int64(st.st_size), mode: UInt32(st.st_mode), mtime: UInt64(st.st_mtim.tv_sec), stat: st)
    }

    /// Archives one file.
    public func push(path: String) async throws -> Outcome {
        try await push(try open(path: path))
    }

    func push(_ file: OpenedFile) async throws -> Outcome {
        let (path, name) = (file.path, file.name)
        let key = prefix.walKey(name, suffix: compression.suffix)
        let url = prefix.url(forKey: key)
        let fields = ["action": "push-wal", "key": url, "prefix": prefix.pathPrefix, "seg": name]
        logger.info("begin archiving a file", detail: "Uploading \"\(path)\" to \"\(url)\".", fields.merging(["state": "begin"]) { $1 })
        let started = POSIX.monotonic()

        // Any codec's copy counts as "already archived": one HEAD per codec, all at once, while
        // the segment is read and compressed; the store sends nothing before the answer is in.
        let store = self.store
        let candidates = [compression] + Compression.allCases.filter { $0 != compression }
        let keys = candidates.map { prefix.walKey(name, suffix: $0.suffix) }
        let check = Task { try await Self.firstExisting(keys, in: store) }
        defer { check.cancel() }

        var options = WriteOptions(ifAbsent: true)
        options.gate = WriteGate { try await check.value == nil }
        options.sizeHint = file.size
        options.spoolDirectory = POSIX.dirname(path)
        let first = try body(file.source, file)
        options.lateMetadata = first.lateMetadata
        options.reread = { [self] in
            // The same file again (PostgreSQL does not reuse a segment it has not archived).
            try body(try Self.reopen(path, as: file.stat), file)
        }
        let outcome = try await store.write(key, from: first.source, options: options)
        if outcome == .alreadyExists {
            // Found by the check (under any codec's name), or created by a racing pusher since
            // (If-None-Match / link refused it).
            if let existing = try await check.value {
                return try await compareExisting(key: existing.key, existing: existing, path: path, fields: fields)
            }
            return try await compareExisting(key: key, existing: try await store.info(key), path: path, fields: fields)
        }
        let elapsed = max(POSIX.monotonic() - started, 1e-6)
        let kib = Double(file.size) / 1024 / elapsed
        logger.info(
            "completed archiving to a file", detail: "Archiving to \"\(url)\" complete at \(formatRate(kib))KiB/s.",
            fields.merging(["state": "complete", "rate": formatRate(kib)]) { $1 })
        return .uploaded
    }

    /// `path` opened again, refused unless it is still the file first opened (`first`): a file
    /// replaced under the path, or one whose size changed, is not uploaded in its place.
    static func reopen(_ path: String, as first: stat) throws -> LocalFileSource {
        let fd = try POSIX.open(path, O_RDONLY)
        let source = LocalFileSource(fd: fd, path: path)  // owns fd
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_dev == first.st_dev, st.st_ino == first.st_ino, st.st_size == first.st_size else {
            throw WALEError(
                .io, "\"\(path)\" was replaced or changed size while it was being archived",
                hint: "nothing was uploaded; PostgreSQL runs archive_command again")
        }
        return source
    }

    /// What the store is given for `file`: its bytes compressed (and sealed), with the raw content's
    /// digest where it rides along.
    private func body(_ source: LocalFileSource, _ file: OpenedFile) throws -> RereadBody {
        var lateMetadata: LateMetadata?
        let counted: any ByteSource
        var digesting: DigestingSource?
        if store.storesLateMetadata {
            // The raw file's digest rides along as object metadata, so a later push of the same
            // name is decided with one HEAD instead of a download.
            let d = DigestingSource(source, algorithm: Self.contentDigestAlgorithm)
            lateMetadata = LateMetadata { Self.metadata(d.contentDigest()) }
            digesting = d
            counted = d
        } else if case .native = sealing {
            // The raw content's digest goes into the object's trailer: a re-push is then compared
            // without the private key, which the database host does not hold.
            let d = DigestingSource(source, algorithm: Self.contentDigestAlgorithm)
            digesting = d
            counted = d
        } else {
            counted = source
        }
        let digestOfContent = digesting.map { d in TrailerDigest(d.algorithm) { d.contentDigest() } }
        let encoded = TransformedSource(
            counted, try sealing.seal(compression.encoder(mode: file.mode, mtime: file.mtime), contentDigest: digestOfContent))
        return RereadBody(source: encoded, lateMetadata: lateMetadata)
    }

    /// The first of `keys` (in that order of preference) that names an object; the lookups run at once.
    static func firstExisting(_ keys: [String], in store: any ObjectStore) async throws -> ObjectInfo? {
        try await withThrowingTaskGroup(of: (Int, ObjectInfo?).self) { group in
            for (i, k) in keys.enumerated() { group.addTask { (i, try await store.info(k)) } }
            var all: [(Int, ObjectInfo?)] = []
            for try await r in group { all.append(r) }
            return all.sorted { $0.0 < $1.0 }.compactMap(\.1).first
        }
    }

    private func checkHeader(fd: Int32, path: String, size: UInt64, name: WALSegmentName) throws {
        var head = [UInt8](repeating: 0, count: WALPageHeader.length)
        let n = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 { throw POSIX.error("read", path) }
        head.removeSubrange(max(0, n)...)
        switch WALPageHeader.validate(head, fileSize: size, name: name) {
        case .failure(let problem):
            throw WALEError(
                .notWAL, "refusing to archive \"\(path)\": it is not a valid WAL segment", detail: problem.description,
                hint: "nothing was uploaded; check that archive_command passes %p and that the file is not damaged")
        case .success(let h) where !h.isKnownMagic:
            logger.warning(
                "archiving a WAL segment with an unknown page magic",
                detail: "magic 0x\(String(h.magic, radix: 16, uppercase: true)) in \(path); its structure is valid",
                hint: "a newer PostgreSQL release than this wal-e knows; please upgrade wal-e")
        case .success:
            break
        }
    }

    /// The digest new objects carry (see `ContentDigestAlgorithm`).
    static let contentDigestAlgorithm = ContentDigestAlgorithm.xxh3
    /// Object metadata: the raw, uncompressed file's digest (hex; the key names the algorithm:
    /// `wale-content-xxh3-128`, or `wale-content-sha256` on objects written before 1.3) and length.
    public static func digestMetadataKey(_ algorithm: ContentDigestAlgorithm) -> String { "wale-content-" + algorithm.rawValue }
    public static let sizeMetadataKey = "wale-content-size"

    static func metadata(_ d: ContentDigest) -> [String: String] {
        [digestMetadataKey(d.algorithm): d.hex, sizeMetadataKey: String(d.length)]
    }

    /// The digest an object's metadata carries, if any.
    static func digest(in metadata: [String: String]?) -> ContentDigest? {
        guard let metadata, let size = metadata[sizeMetadataKey].flatMap({ Int64($0) }) else { return nil }
        for a in ContentDigestAlgorithm.allCases {
            if let hex = metadata[digestMetadataKey(a)] { return ContentDigest(a, hex: hex.lowercased(), length: size) }
        }
        return nil
    }

    /// The archive already has an object for this file: succeed if it holds the same bytes, refuse otherwise.
    private func compareExisting(key: String, existing: ObjectInfo?, path: String, fields: [String: String]) async throws -> Outcome {
        let url = prefix.url(forKey: key)
        let archived: ContentDigest
        if let d = Self.digest(in: existing?.metadata) {
            archived = d  // decided from the HEAD alone
        } else {
            do {
                archived = try await readArchived(key)
            } catch let e as WALEError where e.kind == .corrupt {
                throw WALEError(
                    .overwriteRefused, "refusing to overwrite \"\(url)\": the archived object is unreadable",
                    detail: e.description,
                    hint: "inspect the archive; remove the damaged object by hand only if you are sure \(path) is the right content")
            }
        }
        // The local file's digest with the archived one's algorithm.
        let local = try await DigestingSource(LocalFileSource(path: path), algorithm: archived.algorithm).drain()
        return try decide(url: url, path: path, archived: archived, local: local, fields: fields)
    }

    /// The digest and length of an archived object's decoded content (objects without our
    /// metadata: written by WAL-E or by a store that keeps none). A natively encrypted object says
    /// them in its trailer, read without the private key.
    private func readArchived(_ key: String) async throws -> ContentDigest {
        let algorithm = Self.contentDigestAlgorithm
        return try await store.read(key) { src in
            let first = try await src.next() ?? []
            if Compression.sniff(first) == .native {
                var tail = first
                while let c = try await src.next() { tail = Array((tail + c).suffix(64)) }
                if let d = NativeEncryption.contentDigest(head: first, tail: tail) { return d }
                return try await store.read(key) { again in
                    try await DigestingSource(TransformedSource(again, AutoDecoder(name: key)), algorithm: algorithm).drain()
                }
            }
            return try await DigestingSource(TransformedSource(PrefixedSource(first, src), AutoDecoder(name: key)), algorithm: algorithm).drain()
        }
    }

    private func decide(url: String, path: String, archived: ContentDigest, local: ContentDigest, fields: [String: String]) throws -> Outcome {
        if archived == local {
            logger.info(
                "WAL file is already archived with identical content", detail: "\"\(url)\" matches \"\(path)\"; nothing uploaded.",
                fields.merging(["state": "skip"]) { $1 })
            return .alreadyArchived
        }
        throw WALEError(
            .overwriteRefused, "refusing to overwrite archived WAL file \"\(url)\" with different content",
            detail: "archived: \(archived); local \"\(path)\": \(local)",
            hint: "two clusters may be archiving to the same prefix, or the cluster was restored without a new timeline; "
                + "give each cluster its own prefix")
    }
}

/// Python's `'%02g'` rendering used in WAL-E's rate field.
func formatRate(_ v: Double) -> String {
    var buf = [CChar](repeating: 0, count: 64)
    _ = wale_format_g(&buf, buf.count, v)
    return String(decoding: buf.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
