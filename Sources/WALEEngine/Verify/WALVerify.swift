import WALECodec
import WALECore
import WALEStorage

/// `wal-verify` (WAL-G's name): what the WAL archive lets recovery reach. On every timeline (its
/// history files read), from the oldest backup's start to the newest archived segment: the
/// missing segments, for each backup whether it can be recovered to the end of the archive, and
/// the age of the newest segment (the recovery point objective as it stands). With `integrity`,
/// every segment in those ranges is downloaded and checked (codec, size, page header).
public struct WALVerify: Sendable {
    public struct BackupReach: Sendable {
        public var name: BackupName
        /// The newest timeline whose history includes the backup's.
        public var timeline: TimelineID
        /// The first gap after the backup's start on that timeline, if any.
        public var firstGap: WALArchiveMap.Gap?
        public var recoverable: Bool { firstGap == nil }
    }

    public struct Report: Sendable {
        public var timelines: [WALArchiveMap.TimelineReport] = []
        public var backups: [BackupReach] = []
        public var newestSegment: String?
        public var newestArchivedAt: Double?
        public var now: Double = 0
        public var damaged: [(key: String, message: String)] = []
        public var checkedSegments = 0
        /// History files that could not be read as one.
        public var badHistories: [String] = []

        public var ok: Bool {
            damaged.isEmpty && badHistories.isEmpty && timelines.allSatisfy { $0.gaps.isEmpty && !$0.historyMissing }
        }
        /// 0 when recovery can reach the end of the archive from every backup; 65 when a segment
        /// is damaged; 1 when one is missing.
        public var exitCode: WALEExitCode { !damaged.isEmpty || !badHistories.isEmpty ? .corruptObject : ok ? .success : .userError }
    }

    public let store: any ObjectStore
    public let prefix: StoragePrefix
    public let logger: Logger
    public let retry: RetryPolicy
    public let preferred: Compression

    public init(store: any ObjectStore, prefix: StoragePrefix, logger: Logger, retry: RetryPolicy, preferred: Compression) {
        self.store = store
        self.prefix = prefix
        self.logger = logger
        self.retry = retry
        self.preferred = preferred
    }

    public func run(integrity: Bool, poolSize: Int) async throws -> Report {
        var report = Report(now: POSIX.now())
        var segments: [WALSegmentName] = []
        var keys: [String: String] = [:]
        var histories: [TimelineID: TimelineHistory] = [:]
        var newest: (name: WALSegmentName, at: Double)?
        for o in try await store.list(prefix: prefix.walDirectory) {
            let base = String(o.key.dropFirst(prefix.walDirectory.count))
            guard let suffix = Compression.allCases.map(\.suffix).first(where: { base.hasSuffix($0) }),
                let file = WALFileName(String(base.dropLast(suffix.count)))
            else { continue }
            switch file {
            case .segment(let s):
                segments.append(s)
                keys[s.description] = keys[s.description] ?? o.key
                if newest == nil || s.description > newest!.name.description { newest = (s, o.lastModified) }
            case .history(let t):
                let text = try await store.read(o.key) { src in try await TransformedSource(src, AutoDecoder(name: o.key)).collect(limit: 4 << 20) }
                if let h = TimelineHistory(parsing: String(decoding: text, as: UTF8.self)) {
                    histories[t] = h
                } else {
                    report.badHistories.append(prefix.url(forKey: o.key))
                }
            default: continue
            }
        }
        report.newestSegment = newest?.name.description
        report.newestArchivedAt = newest?.at

        let catalog = BackupCatalog(store: store, prefix: prefix)
        var backups = try await catalog.list()
        var size = WALSegmentSize.default
        if let latest = BackupCatalog.latest(backups), let x = try? await catalog.loadSentinel(latest).extra,
            let s = WALSegmentSize(bytes: x.segmentSize)
        {
            size = s
        }
        backups.sort { $0.name < $1.name }
        let map = WALArchiveMap(segments: segments, histories: histories, size: size)
        let timelines = map.timelines
        for t in timelines {
            let starts = backups.filter { map.follows(t, from: $0.name.segment.timeline) }.map { $0.name.segment.segmentNumber(size: size) }
            report.timelines.append(map.report(timeline: t, from: starts.min()))
        }
        for b in backups {
            let target = timelines.last { map.follows($0, from: b.name.segment.timeline) } ?? b.name.segment.timeline
            let r = map.report(timeline: target, from: b.name.segment.segmentNumber(size: size))
            report.backups.append(BackupReach(name: b.name, timeline: target, firstGap: r.newest == nil ? nil : r.gaps.first))
        }

        if integrity {
            // Every segment recovery would read in the ranges above, once.
            var names = Set<String>()
            for r in report.timelines {
                guard let from = r.from, let newest = r.newest else { continue }
                for link in r.chain {
                    let lo = max(link.firstSegment, from.segmentNumber(size: size))
                    let hi = min(link.lastSegment ?? .max, newest.segmentNumber(size: size))
                    guard lo <= hi else { continue }
                    let held = Set(segments.filter { $0.timeline == link.timeline }.map { $0.segmentNumber(size: size) })
                    for n in lo...hi where held.contains(n) { names.insert(WALSegmentName(timeline: link.timeline, segmentNumber: n, size: size).description) }
                }
            }
            let downloader = WALDownloader(store: store, prefix: prefix, preferred: preferred)
            let found = keys
            let results = try await boundedConcurrently(names.sorted(), width: poolSize) { seg -> (String, String)? in
                let key = found[seg]!
                do {
                    try await retry.run(logger: logger, what: "the check of \(key)") { _ in try await downloader.check(key: key, name: seg) }
                    return nil
                } catch let e as WALEError where e.kind == .corrupt || e.kind == .notFound {
                    return (prefix.url(forKey: key), e.message + (e.detail.map { ": " + $0 } ?? ""))
                }
            }
            report.checkedSegments = names.count
            report.damaged = results.compactMap { $0 }.map { (key: $0.0, message: $0.1) }
        }
        return report
    }
}

extension WALVerify.Report {
    public func json() -> JSON {
        func gap(_ g: WALArchiveMap.Gap) -> JSON {
            .object([("first", .string(g.first.description)), ("last", .string(g.last.description)), ("count", .int(Int64(g.count)))])
        }
        return .object([
            ("ok", .bool(ok)),
            ("newest_segment", newestSegment.map { .string($0) } ?? .null),
            ("newest_segment_age_seconds", newestArchivedAt.map { .int(Int64(max(0, now - $0))) } ?? .null),
            ("timelines", .array(timelines.map { t in
                .object([
                    ("timeline", .int(Int64(t.timeline.value))),
                    ("history", .array(t.chain.dropFirst().map { .int(Int64($0.timeline.value)) })),
                    ("history_missing", .bool(t.historyMissing)),
                    ("from", t.from.map { .string($0.description) } ?? .null),
                    ("newest", t.newest.map { .string($0.description) } ?? .null),
                    ("missing_segments", .int(Int64(t.missingSegments))),
                    ("gaps", .array(t.gaps.map(gap))),
                ])
            })),
            ("backups", .array(backups.map { b in
                .object([
                    ("name", .string(b.name.description)), ("timeline", .int(Int64(b.timeline.value))),
                    ("recoverable_to_end", .bool(b.recoverable)), ("first_gap", b.firstGap.map(gap) ?? .null),
                ])
            })),
            ("checked_segments", .int(Int64(checkedSegments))),
            ("damaged", .array(damaged.map { .object([("key", .string($0.key)), ("message", .string($0.message))]) })),
            ("bad_history_files", .array(badHistories.map { .string($0) })),
        ])
    }

    /// One line per finding, for a terminal.
    public func text() -> String {
        var out: [String] = []
        if let n = newestSegment, let at = newestArchivedAt {
            out.append("newest archived segment: \(n), \(Int(max(0, now - at))) s ago")
        } else {
            out.append("no WAL segment is archived under this prefix")
        }
        for t in timelines {
            let history = t.chain.dropFirst().map { "\($0.timeline.value)" }.joined(separator: ", ")
            var line = "timeline \(t.timeline.value)" + (history.isEmpty ? "" : " (from timelines \(history))")
            if let f = t.from, let n = t.newest { line += ": \(f) to \(n)" }
            line += t.gaps.isEmpty ? ", no gap" : ", \(t.missingSegments) segments missing"
            if t.historyMissing { line += "; its history file \(t.timeline).history is missing" }
            out.append(line)
            for g in t.gaps { out.append("  missing: \(g.first)" + (g.count > 1 ? " to \(g.last) (\(g.count) segments)" : "")) }
        }
        for b in backups {
            out.append(
                "backup \(b.name): " + (b.firstGap.map { "cannot be recovered past \($0.first) (missing) on timeline \(b.timeline.value)" }
                    ?? "can be recovered to the end of the archive on timeline \(b.timeline.value)"))
        }
        if checkedSegments > 0 { out.append("checked \(checkedSegments) segments: \(damaged.isEmpty ? "all intact" : "\(damaged.count) damaged")") }
        for d in damaged { out.append("  damaged: \(d.key): \(d.message)") }
        for h in badHistories { out.append("  damaged: \(h) is not a timeline history file") }
        return out.joined(separator: "\n") + "\n"
    }
}
