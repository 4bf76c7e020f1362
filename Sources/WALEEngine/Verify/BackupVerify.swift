import WALECodec
import WALECore
import WALEStorage

/// `verify`: proves that a stored backup restores, without writing a data directory. It reads
/// every object the restore would read, once, streamed as backup-fetch streams it: the sentinel
/// (its own checksum, and agreement with the objects found), `extended_version.txt`, every
/// partition (codec checksums, gpg, a well-formed tar, each file against its manifest entry, no
/// file the manifest does not list, global/pg_control present) and the WAL from the backup's
/// start to its stop segment (present, decoding, a valid page header). Every problem is collected
/// and named with its object's key, not only the first.
public struct BackupVerify: Sendable {
    public struct Problem: Sendable, Equatable {
        public enum Kind: String, Sendable { case missing, corrupt }
        public var kind: Kind
        public var key: String
        public var message: String
    }

    public struct Report: Sendable {
        public var name: BackupName
        public var partitions = 0
        public var files = 0
        public var bytes: Int64 = 0
        /// Whether file checksums were compared (our backups; WAL-E's have no manifest).
        public var fileChecksums = false
        public var walSegments = 0
        public var online = true
        public var problems: [Problem] = []

        /// 65 when anything is damaged, else 1 when anything is missing, else 0.
        public var exitCode: WALEExitCode {
            if problems.contains(where: { $0.kind == .corrupt }) { return .corruptObject }
            return problems.isEmpty ? .success : .userError
        }

        public func json() -> JSON {
            .object([
                ("name", .string(name.description)), ("ok", .bool(problems.isEmpty)), ("partitions", .int(Int64(partitions))),
                ("files", .int(Int64(files))), ("bytes", .int(bytes)), ("file_checksums", .bool(fileChecksums)),
                ("wal_segments", .int(Int64(walSegments))), ("online", .bool(online)),
                ("problems", .array(problems.map { .object([("kind", .string($0.kind.rawValue)), ("key", .string($0.key)), ("message", .string($0.message))]) })),
            ])
        }
    }

    public let reader: BackupReader
    public let preferred: Compression

    public init(reader: BackupReader, preferred: Compression) {
        self.reader = reader
        self.preferred = preferred
    }

    var prefix: StoragePrefix { reader.prefix }
    var store: any ObjectStore { reader.store }

    /// `verified`: backups this run already checked (`verify --all`), and whether they restore:
    /// an incremental's ancestors among them are not read again.
    public func run(_ backup: BackupInfo, poolSize: Int, progress: Progress? = nil, verified: [BackupName: Bool] = [:]) async throws -> Report {
        let name = backup.name
        var report = Report(name: name)
        func problem(_ kind: Problem.Kind, _ key: String, _ message: String) {
            report.problems.append(Problem(kind: kind, key: prefix.url(forKey: key), message: message))
        }
        /// A store failure that is neither "missing" nor "damaged" (credentials, a store that is
        /// down after the retries) ends the verification: nothing can be said about the backup.
        func classify(_ e: Error, _ key: String) throws {
            guard let w = e as? WALEError else { throw e }
            switch w.kind {
            case .notFound: problem(.missing, key, "missing")
            case .corrupt, .notWAL: problem(.corrupt, key, w.message + (w.detail.map { ": " + $0 } ?? ""))
            default: throw w
            }
        }

        // The sentinel: readable, its checksum right, its fields agreeing with the name.
        var sentinel: Sentinel?
        do {
            sentinel = try await BackupCatalog(store: store, prefix: prefix).loadSentinel(backup)
        } catch {
            try classify(error, backup.sentinelKey)
        }
        if let x = sentinel?.extra, x.timeline != name.segment.timeline.value {
            problem(.corrupt, backup.sentinelKey, "the sentinel's timeline \(x.timeline) is not the backup name's \(name.segment.timeline.value)")
        }
        report.online = sentinel?.extra?.online ?? true
        var ancestors: [BackupInfo] = []
        if name.isIncremental && sentinel != nil {
            // The chain it is restored with: every backup it is built on present, every cluster
            // manifest readable, every file it takes from a parent found there; the ancestors'
            // partitions are checked below with its own.
            do {
                let catalog = BackupCatalog(store: store, prefix: prefix)
                let layers = try await catalog.chain(of: backup, in: try await catalog.list())
                _ = try await reader.chainPlan(layers.map(\.name))
                ancestors = Array(layers.dropLast())
            } catch {
                try classify(error, name.clusterManifestKey(prefix))
            }
        }

        let versionKey = name.versionKey(prefix)
        do {
            let text = try await store.read(versionKey) { try await $0.collect(limit: 1 << 20) }
            let version = String(decoding: text, as: UTF8.self)
            if let x = sentinel?.extra, version != x.postgresVersion {
                problem(.corrupt, versionKey, "does not hold the version the sentinel records (\(x.postgresVersion))")
            } else if !version.hasPrefix("PostgreSQL") {
                problem(.corrupt, versionKey, "does not hold a PostgreSQL version string")
            }
        } catch {
            try classify(error, versionKey)
        }

        // Partitions: numbered 0..<n without a hole, n as the sentinel says; each with its
        // manifest when the backup has manifests (our backups).
        let partitions = try await reader.partitions(name) { report.problems.append(Problem(kind: .corrupt, key: prefix.url(forKey: $0), message: "not a tar partition")) }
        report.partitions = partitions.count
        progress?.setTotal(bytes: sentinel?.expandedSizeBytes ?? 0)
        progress?.setTotal(units: partitions.count)
        let numbers = Set(partitions.map(\.0))
        let expectedCount = max(sentinel?.extra?.partitionCount ?? 0, (partitions.last?.0).map { $0 + 1 } ?? 0)
        for n in 0..<expectedCount where !numbers.contains(n) {
            // Its codec's suffix is the sentinel's (WAL-E's sentinels do not say: lzop, then).
            let suffix = Compression(name: sentinel?.extra?.compression ?? "lzop")?.suffix ?? ".*"
            problem(.missing, name.partitionKey(prefix, n, suffix: suffix), "partition \(n) is missing")
        }
        if expectedCount == 0 { problem(.missing, name.partitionsDirectory(prefix), "the backup has no tar partitions") }
        let manifestKeys = Set(try await reader.manifestKeys(name))
        report.fileChecksums = !manifestKeys.isEmpty || sentinel?.extra != nil
        if report.fileChecksums {
            for n in 0..<expectedCount where !manifestKeys.contains(name.manifestKey(prefix, n)) {
                problem(.missing, name.manifestKey(prefix, n), "the manifest of partition \(n) is missing")
            }
        }

        // The WAL is checked while the partitions are (it is one more download beside them).
        let (walSentinel, online) = (sentinel, report.online)
        async let walCheck = checkWAL(sentinel: walSentinel, online: online, backup: backup, poolSize: poolSize)
        let withManifests = report.fileChecksums
        let checked = try await boundedConcurrently(partitions, width: poolSize) { p in
            try await checkPartition(p, backup: name, withManifest: withManifests && manifestKeys.contains(name.manifestKey(prefix, p.0)), progress: progress)
        }
        for c in checked {
            report.files += c.files
            report.bytes += c.bytes
            report.problems += c.problems
        }
        if !checked.contains(where: \.sawControlFile) && report.problems.isEmpty {
            problem(.corrupt, name.partitionsDirectory(prefix), "no partition holds global/pg_control: the restored directory could not start")
        }
        if let x = sentinel?.extra, checked.count == x.partitionCount, checked.allSatisfy({ $0.problems.isEmpty }), report.files != x.fileCount {
            problem(.corrupt, backup.sentinelKey, "the sentinel counts \(x.fileCount) files, the partitions hold \(report.files)")
        }

        for a in ancestors {
            if let ok = verified[a.name] {
                if !ok { problem(.corrupt, a.sentinelKey, "\(a.name), which this incremental backup is built on, does not restore (above)") }
                continue
            }
            let parts = try await reader.partitions(a.name)
            let results = try await boundedConcurrently(parts, width: poolSize) { p in
                try await checkPartition(p, backup: a.name, withManifest: true, progress: nil)
            }
            report.problems += results.flatMap(\.problems)
        }

        let wal = try await walCheck
        report.walSegments = wal.segments
        report.problems += wal.problems
        return report
    }

    /// The WAL consistency needs: from the start segment to the stop segment (an offline backup of
    /// a cleanly stopped cluster needs none). Returns how many segments and the problems found.
    func checkWAL(sentinel: Sentinel?, online: Bool, backup: BackupInfo, poolSize: Int) async throws -> (segments: Int, problems: [Problem]) {
        let name = backup.name
        guard let s = sentinel, online, let stop = WALSegmentName(s.stopSegment) else { return (0, []) }
        let size = s.extra.flatMap { WALSegmentSize(bytes: $0.segmentSize) } ?? .default
        let first = name.segment.segmentNumber(size: size)
        let last = stop.segmentNumber(size: size)
        if stop.timeline != name.segment.timeline || last < first || last - first > 1_000_000 {
            return (0, [Problem(kind: .corrupt, key: prefix.url(forKey: backup.sentinelKey), message: "the stop segment \(s.stopSegment) does not follow the start segment \(name.segment)")])
        }
        let names = (first...last).map { WALSegmentName(timeline: stop.timeline, segmentNumber: $0, size: size).description }
        let downloader = WALDownloader(store: store, prefix: prefix, preferred: preferred)
        let (prefix, preferred, reader) = (self.prefix, self.preferred, self.reader)
        let results = try await boundedConcurrently(names, width: poolSize) { seg -> Problem? in
            guard let key = try await downloader.locate(seg) else {
                return Problem(
                    kind: .missing, key: prefix.url(forKey: prefix.walKey(seg, suffix: preferred.suffix)),
                    message: "WAL segment \(seg), which the backup needs to reach consistency, is not in the archive")
            }
            do {
                try await reader.retry.run(logger: reader.logger, what: "the check of \(key)") { _ in try await downloader.check(key: key, name: seg) }
                return nil
            } catch let e as WALEError where e.kind == .corrupt || e.kind == .notFound {
                return Problem(kind: e.kind == .corrupt ? .corrupt : .missing, key: prefix.url(forKey: key), message: e.message + (e.detail.map { ": " + $0 } ?? ""))
            }
        }
        return (names.count, results.compactMap { $0 })
    }

    struct PartitionResult: Sendable {
        var files = 0
        var bytes: Int64 = 0
        var sawControlFile = false
        var problems: [Problem] = []
    }

    private func checkPartition(_ p: (Int, String), backup: BackupName, withManifest: Bool, progress: Progress?) async throws -> PartitionResult {
        defer { progress?.unitDone() }
        let url = prefix.url(forKey: p.1)
        var result = PartitionResult()
        var expected: [ManifestEntry]?
        var others: ManifestFormat.PartitionOthers?
        if withManifest {
            do {
                (expected, others) = try await reader.partitionManifest(backup, p.0)
            } catch let e as WALEError where e.kind == .corrupt || e.kind == .notFound {
                // The partition is still checked as a tar; its files cannot be.
                result.problems.append(Problem(kind: .corrupt, key: prefix.url(forKey: backup.manifestKey(prefix, p.0)), message: e.message))
            }
        }
        do {
            let sink = try await reader.read(partition: p.1, what: "the check of \(p.1)") { VerifySink(partition: url, expected: expected, progress: progress) }
            result.files = sink.files
            result.bytes = sink.bytes
            result.sawControlFile = sink.sawControlFile
            let against = expected == nil ? "" : " (against its manifest \(prefix.url(forKey: backup.manifestKey(prefix, p.0))))"
            result.problems += sink.problems.map { Problem(kind: .corrupt, key: url, message: $0 + against) }
            // The directories and links it lists (delta restores rely on them) are the partition's.
            if let others, others != ManifestFormat.PartitionOthers(members: sink.nonFiles) {
                result.problems.append(Problem(kind: .corrupt, key: url, message: "holds other directories and links than its manifest lists" + against))
            }
            if let m = sink.matcher {
                let missing = m.missing
                if !missing.isEmpty {
                    result.problems.append(Problem(kind: .corrupt, key: url, message: "lacks \(missing.count) files its manifest lists: " + missing.prefix(5).joined(separator: ", ") + against))
                }
            }
        } catch let e as WALEError where e.kind == .corrupt || e.kind == .notFound {
            result.problems.append(Problem(kind: e.kind == .notFound ? .missing : .corrupt, key: url, message: e.message + (e.detail.map { ": " + $0 } ?? "")))
        }
        reader.logger.info("checked a partition", detail: "\(url): \(result.files) files", ["action": "verify-partition"])
        return result
    }
}

/// A tar sink that writes nothing: it checks member names as the extractor would refuse them,
/// and each file against the partition's manifest, collecting every problem.
final class VerifySink: TarSink {
    let partition: String
    let matcher: ManifestMatcher?
    private(set) var problems: [String] = []
    private(set) var files = 0
    private(set) var bytes: Int64 = 0
    private(set) var sawControlFile = false
    /// The directory and link members, for the manifest's lists of them.
    private(set) var nonFiles: [TarEntry] = []
    private var inFile = false

    let progress: Progress?

    init(partition: String, expected: [ManifestEntry]?, progress: Progress?) {
        self.partition = partition
        self.progress = progress
        matcher = expected.map { ManifestMatcher($0, partition: partition) }
    }

    func begin(_ e: TarEntry) throws {
        switch SafeExtractor.memberComponents(e.name) {
        case .failure(let why):
            problems.append("member \"\(e.name)\" would be refused: \(why.reason)")
            inFile = false
        case .success(let parts):
            inFile = e.kind == .file
            guard inFile else {
                nonFiles.append(e)
                return
            }
            let path = parts.joined(separator: "/")
            if path == "global/pg_control" { sawControlFile = true }
            matcher?.begin(file: path, mode: e.mode)
        }
    }

    func data(_ b: UnsafeRawBufferPointer) throws {
        guard inFile else { return }
        matcher?.update(b)
        progress?.add(bytes: b.count)
        bytes += Int64(b.count)
    }

    func end() throws {
        guard inFile else { return }
        inFile = false
        files += 1
        do {
            try matcher?.end()
        } catch let e as WALEError {
            problems.append(e.message + (e.detail.map { " (\($0))" } ?? ""))
        }
        if let m = matcher, let last = m.unlisted.last, m.unlisted.count > reportedUnlisted {
            reportedUnlisted = m.unlisted.count
            problems.append("holds \(last), which its manifest does not list")
        }
    }

    private var reportedUnlisted = 0
}
