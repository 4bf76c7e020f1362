#if canImport(Glibc)
import Glibc
#endif
import WALECodec
import WALECore
import WALEStorage

/// `wal-fetch %f %p`: restore one WAL file for PostgreSQL, promoting a prefetched copy when one
/// is complete and verified, and start prefetching the segments that follow on the same timeline.
public struct WALFetch: Sendable {
    public let downloader: WALDownloader
    public let logger: Logger
    public let retry: RetryPolicy
    /// How many following segments to prefetch (0 disables prefetching).
    public let prefetch: Int
    /// Starts a background prefetcher for `segments` into the prefetch area under `base`.
    public let startPrefetcher: @Sendable (_ base: String, _ segments: [String]) -> Void
    /// How long to wait for an in-flight prefetch that has stopped growing before downloading in-band.
    public var stallTimeout: Double = 2

    public init(
        downloader: WALDownloader, logger: Logger, retry: RetryPolicy, prefetch: Int,
        startPrefetcher: @escaping @Sendable (String, [String]) -> Void
    ) {
        self.downloader = downloader
        self.logger = logger
        self.retry = retry
        self.prefetch = max(0, prefetch)
        self.startPrefetcher = startPrefetcher
    }

    public enum Outcome: Sendable, Equatable { case fetched, promoted }

    public func run(name: String, destination: String) async throws -> Outcome {
        guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
            throw WALEError(.user, "invalid WAL file name \"\(name)\"", hint: "restore_command must pass %f as the first argument")
        }
        let base = realDirectory(of: destination)
        let area = PrefetchDirectory(base: base)
        let kind = WALFileName(name)
        let key = downloader.prefix.walKey(name, suffix: downloader.preferred.suffix)
        let url = downloader.prefix.url(forKey: key)
        let fields = ["action": "wal-fetch", "key": url, "prefix": downloader.prefix.pathPrefix, "seg": name]

        var outcome = Outcome.fetched
        var segmentSize: WALSegmentSize?
        if case .segment(let seg)? = kind, let size = promoteIfReady(area, seg, to: destination) {
            outcome = .promoted
            segmentSize = size
            logger.info("promoted prefetched wal segment", detail: "\(name) was prefetched; moved to \"\(destination)\".", fields)
        } else {
            logger.info("begin wal restore", fields.merging(["state": "begin"]) { $1 })
            do {
                segmentSize = try await retry.run(logger: logger, what: "the download of \(name)") { _ in
                    try await downloader.download(name: name, to: destination, durable: false)
                }
            } catch let e as WALEError where e.kind == .notFound {
                logger.info(
                    "could not locate object while performing wal restore",
                    detail: "The absolute URL that could not be located is \(url).",
                    hint: "This can be normal when Postgres is trying to detect what timelines are available during restoration.",
                    fields)
                throw e
            }
            logger.info("complete wal restore", fields.merging(["state": "complete"]) { $1 })
        }

        if prefetch > 0 {
            switch kind {
            case .segment(let seg)?:
                schedulePrefetch(area, after: seg, size: segmentSize ?? .default)
            case .history?:
                // A new timeline is being chosen: what was prefetched on the old one is useless.
                area.clear(except: [])
            default:
                break
            }
        }
        return outcome
    }

    /// Moves a complete, verified prefetched segment into place; waits briefly for one in flight.
    private func promoteIfReady(_ area: PrefetchDirectory, _ seg: WALSegmentName, to destination: String) -> WALSegmentSize? {
        let name = seg.description
        var lastBytes: Int64 = -1
        var lastGrowth = POSIX.monotonic()
        while true {
            if let size = verifiedPrefetch(area.ready(name), seg) {
                if rename(area.ready(name), destination) == 0 { return size }
                return nil
            }
            guard area.isRunning(name) else {
                // It may have finished between the two checks.
                if let size = verifiedPrefetch(area.ready(name), seg), rename(area.ready(name), destination) == 0 { return size }
                return nil
            }
            let bytes = area.runningBytes(name)
            if bytes > lastBytes {
                lastBytes = bytes
                lastGrowth = POSIX.monotonic()
            } else if POSIX.monotonic() - lastGrowth > stallTimeout {
                logger.info("prefetch of \(name) stalled; downloading it directly")
                return nil
            }
            usleep(10_000)
        }
    }

    /// The segment size if `path` is a complete copy of `seg` (size and page header agree).
    private func verifiedPrefetch(_ path: String, _ seg: WALSegmentName) -> WALSegmentSize? {
        guard let st = POSIX.stat(path), st.st_mode & S_IFMT == S_IFREG else { return nil }
        guard let fd = try? POSIX.open(path, O_RDONLY) else { return nil }
        defer { close(fd) }
        guard let head = try? POSIX.read(fd, count: WALPageHeader.length, path: path),
            case .success(let h) = WALPageHeader.validate(head, fileSize: UInt64(st.st_size), name: seg)
        else {
            logger.warning("discarding a prefetched file that is not a complete copy of \(seg)", detail: path)
            unlink(path)
            return nil
        }
        return h.segmentSize
    }

    private func schedulePrefetch(_ area: PrefetchDirectory, after seg: WALSegmentName, size: WALSegmentSize) {
        let window = (1...prefetch).map { seg.advanced(by: UInt64($0), size: size).description }
        area.clear(except: Set(window))
        let wanted = window.filter { POSIX.stat(area.ready($0)) == nil && !area.isRunning($0) }
        guard !wanted.isEmpty else { return }
        do {
            try area.create()
        } catch {
            logger.warning("cannot create the prefetch directory; prefetching is off for this call", detail: "\(error)")
            return
        }
        startPrefetcher(area.base, wanted)
    }
}

/// `wal-prefetch BASE SEGMENT...` (internal): download segments into the prefetch area, claiming
/// each by creating its `running/<seg>` directory first so two prefetchers never fetch the same one.
public struct WALPrefetch: Sendable {
    public let downloader: WALDownloader
    public let logger: Logger
    public let concurrency: Int

    public init(downloader: WALDownloader, logger: Logger, concurrency: Int) {
        self.downloader = downloader
        self.logger = logger
        self.concurrency = max(1, concurrency)
    }

    public func run(base: String, segments: [String]) async {
        let area = PrefetchDirectory(base: base)
        do { try area.create() } catch { return }
        await withTaskGroup(of: Void.self) { group in
            var next = segments.makeIterator()
            for _ in 0..<concurrency {
                guard let s = next.next() else { break }
                group.addTask { await fetch(s, area) }
            }
            while await group.next() != nil {
                if let s = next.next() { group.addTask { await fetch(s, area) } }
            }
        }
    }

    private func fetch(_ name: String, _ area: PrefetchDirectory) async {
        guard WALSegmentName(name) != nil else { return }
        let dir = area.claim(name)
        if mkdir(dir, 0o700) != 0 {
            guard errno == EEXIST, !area.isRunning(name) else { return }
            area.removeClaim(name)
            guard mkdir(dir, 0o700) == 0 else { return }
        }
        defer { area.removeClaim(name) }
        do {
            let pid = try AtomicFileWriter(path: dir + "/pid")
            try pid.write(Array("\(getpid())\n".utf8))
            try pid.commit(durable: false)
            // fsync before the rename into prefetch/: after a crash, a promoted file is whole.
            try await downloader.download(name: name, to: dir + "/data", durable: true)
            try POSIX.rename(dir + "/data", area.ready(name))
            logger.debug("prefetched \(name)", ["action": "wal-prefetch", "seg": name])
        } catch let e as WALEError where e.kind == .notFound {
            logger.debug("\(name) is not in the archive (yet)", ["action": "wal-prefetch", "seg": name])
        } catch {
            logger.warning("prefetch of \(name) failed", detail: "\(error)", ["action": "wal-prefetch", "seg": name])
        }
    }
}

/// The real directory `path` is in (PostgreSQL passes `pg_wal/RECOVERYXLOG`, relative to PGDATA).
func realDirectory(of path: String) -> String {
    let dir = POSIX.dirname(path)
    return POSIX.realPath(dir) ?? dir
}
