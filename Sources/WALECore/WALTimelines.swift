/// A timeline's history file (`00000002.history`): each ancestor with the position where the
/// next timeline branched off it, oldest first.
public struct TimelineHistory: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var parent: TimelineID
        public var switchPoint: LSN
        public init(parent: TimelineID, switchPoint: LSN) {
            self.parent = parent
            self.switchPoint = switchPoint
        }
    }

    public var entries: [Entry]

    public init(entries: [Entry]) { self.entries = entries }

    /// Parses `parentTLI <tab> X/Y <tab> reason` lines; comments and blank lines are skipped.
    /// nil when a line is not of that shape (the file is damaged).
    public init?(parsing text: String) {
        var out: [Entry] = []
        for line in text.split(separator: "\n") {
            let t = line.drop(while: { $0 == " " || $0 == "\t" })
            if t.hasPrefix("#") || t.allSatisfy({ $0 == " " || $0 == "\t" || $0 == "\r" }) { continue }
            let f = t.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard f.count >= 2, let tli = UInt32(f[0]), let lsn = LSN(parsing: f[1]) else { return nil }
            out.append(Entry(parent: TimelineID(tli), switchPoint: lsn))
        }
        entries = out
    }
}

/// What recovery can reach from an archive's WAL: for a timeline, the segments PostgreSQL would
/// read (each from the newest timeline of the history that holds it, as its
/// `XLogFileReadAnyTLI` picks them) and the gaps between a starting segment and the newest one.
/// A gap makes every later point unreachable from a backup before it.
public struct WALArchiveMap: Sendable {
    public struct Gap: Sendable, Equatable {
        /// The first and last missing segment, named on the timeline recovery expects them on.
        public var first: WALSegmentName
        public var last: WALSegmentName
        public var count: UInt64
    }

    public struct TimelineReport: Sendable {
        public var timeline: TimelineID
        /// The timelines whose segments recovery on this one reads, with the first segment each
        /// is read from (the segment of its branch point) and, for ancestors, the last.
        public var chain: [(timeline: TimelineID, firstSegment: UInt64, lastSegment: UInt64?)]
        /// The newest segment recovery on this timeline can read.
        public var newest: WALSegmentName?
        /// Where the check started (the oldest backup on this timeline's history, else the
        /// oldest segment).
        public var from: WALSegmentName?
        public var gaps: [Gap]
        /// A timeline above 1 whose history file is not in the archive: recovery cannot follow
        /// it from its ancestors.
        public var historyMissing: Bool
        public var missingSegments: UInt64 { gaps.reduce(0) { $0 + $1.count } }
    }

    public let size: WALSegmentSize
    /// Segment numbers present, per timeline, ascending.
    let present: [TimelineID: [UInt64]]
    let histories: [TimelineID: TimelineHistory]

    public init(segments: [WALSegmentName], histories: [TimelineID: TimelineHistory], size: WALSegmentSize) {
        var byTimeline: [TimelineID: Set<UInt64>] = [:]
        for s in segments where s.isValid(for: size) { byTimeline[s.timeline, default: []].insert(s.segmentNumber(size: size)) }
        present = byTimeline.mapValues { $0.sorted() }
        self.histories = histories
        self.size = size
    }

    /// Every timeline the archive knows: with segments or a history file.
    public var timelines: [TimelineID] { Set(present.keys).union(histories.keys).sorted() }

    func chain(_ t: TimelineID) -> (chain: [(timeline: TimelineID, firstSegment: UInt64, lastSegment: UInt64?)], historyMissing: Bool) {
        guard let h = histories[t] else { return ([(t, 0, nil)], t.value > 1) }
        var out: [(timeline: TimelineID, firstSegment: UInt64, lastSegment: UInt64?)] = []
        var begin: UInt64 = 0
        for e in h.entries {
            let end = e.switchPoint.value / size.bytes
            out.append((e.parent, begin, end))
            begin = end
        }
        out.append((t, begin, nil))
        return (out.reversed(), false)  // newest first, as recovery tries them
    }

    /// The report for `timeline`, checking from segment number `from` (nil: its oldest segment).
    public func report(timeline: TimelineID, from: UInt64?) -> TimelineReport {
        let (chain, historyMissing) = chain(timeline)
        // For each segment number the chain can serve: the newest timeline holding it in range.
        var served: [UInt64: TimelineID] = [:]
        for link in chain.reversed() {
            for n in present[link.timeline] ?? [] where n >= link.firstSegment && n <= (link.lastSegment ?? .max) {
                served[n] = link.timeline
            }
        }
        let numbers = served.keys.sorted()
        func expectedTimeline(_ n: UInt64) -> TimelineID {
            chain.first { n >= $0.firstSegment }?.timeline ?? timeline
        }
        func name(_ n: UInt64) -> WALSegmentName { WALSegmentName(timeline: expectedTimeline(n), segmentNumber: n, size: size) }
        guard let newest = numbers.last else {
            return TimelineReport(timeline: timeline, chain: chain, newest: nil, from: nil, gaps: [], historyMissing: historyMissing)
        }
        let start = from ?? numbers[0]
        var gaps: [Gap] = []
        var expected = start
        for n in numbers where n >= start {
            if n > expected { gaps.append(Gap(first: name(expected), last: name(n - 1), count: n - expected)) }
            expected = n + 1
        }
        if start > newest { gaps.append(Gap(first: name(newest + 1), last: name(start), count: start - newest)) }
        return TimelineReport(
            timeline: timeline, chain: chain, newest: WALSegmentName(timeline: served[newest]!, segmentNumber: newest, size: size),
            from: name(start), gaps: gaps, historyMissing: historyMissing)
    }

    /// Whether `timeline`'s history includes `other` (itself included).
    public func follows(_ timeline: TimelineID, from other: TimelineID) -> Bool {
        chain(timeline).chain.contains { $0.timeline == other }
    }
}
