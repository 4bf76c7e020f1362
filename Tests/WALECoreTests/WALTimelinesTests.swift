import Testing
@testable import WALECore

@Suite struct WALTimelinesTests {
    func seg(_ t: UInt32, _ n: UInt64) -> WALSegmentName { WALSegmentName(timeline: TimelineID(t), segmentNumber: n, size: .default) }

    @Test func parsesHistoryFiles() {
        let h = TimelineHistory(parsing: "1\t0/3000090\tno recovery target specified\n\n# comment\n2\t0/5A00000\tat restore point \"x\"\n")
        #expect(h?.entries == [.init(parent: TimelineID(1), switchPoint: LSN(0x300_0090)), .init(parent: TimelineID(2), switchPoint: LSN(0x5A0_0000))])
        #expect(TimelineHistory(parsing: "") == TimelineHistory(entries: []))
        #expect(TimelineHistory(parsing: "1\tnot-an-lsn\treason\n") == nil)
        #expect(TimelineHistory(parsing: "x\t0/1\treason\n") == nil)
    }

    @Test func oneTimelineWithAHole() {
        let map = WALArchiveMap(segments: [1, 2, 3, 6, 7].map { seg(1, $0) }, histories: [:], size: .default)
        let r = map.report(timeline: TimelineID(1), from: 2)
        #expect(r.newest == seg(1, 7) && r.from == seg(1, 2))
        #expect(r.gaps == [.init(first: seg(1, 4), last: seg(1, 5), count: 2)])
        #expect(r.missingSegments == 2 && !r.historyMissing)
        // From after the hole: none. From before the oldest segment: the start is missing.
        #expect(map.report(timeline: TimelineID(1), from: 6).gaps.isEmpty)
        #expect(map.report(timeline: TimelineID(1), from: 0).gaps == [.init(first: seg(1, 0), last: seg(1, 0), count: 1), .init(first: seg(1, 4), last: seg(1, 5), count: 2)])
        // A backup that starts after the newest segment: everything from the newest on is missing.
        #expect(map.report(timeline: TimelineID(1), from: 9).gaps == [.init(first: seg(1, 8), last: seg(1, 9), count: 2)])
    }

    @Test func followsTheHistoryAcrossAPromotion() {
        // Timeline 2 branched off 1 in segment 5: recovery on 2 reads 1's segments up to 4 (and
        // 5 if 2 lacks it), then 2's from 5. Timeline 1's segments after 5 are not on 2's history.
        let h = TimelineHistory(entries: [.init(parent: TimelineID(1), switchPoint: LSN(5 * (16 << 20) + 0x90))])
        var segments = (1...6).map { seg(1, $0) } + (5...8).map { seg(2, $0) }
        var map = WALArchiveMap(segments: segments, histories: [TimelineID(2): h], size: .default)
        #expect(map.timelines == [TimelineID(1), TimelineID(2)])
        var r = map.report(timeline: TimelineID(2), from: 2)
        #expect(r.gaps.isEmpty && r.newest == seg(2, 8))
        #expect(r.chain.map(\.timeline) == [TimelineID(2), TimelineID(1)])
        #expect(map.follows(TimelineID(2), from: TimelineID(1)) && !map.follows(TimelineID(1), from: TimelineID(2)))

        // 2's first segment missing: 1's copy of segment 5 serves (as PostgreSQL falls back).
        segments.removeAll { $0 == seg(2, 5) }
        map = WALArchiveMap(segments: segments, histories: [TimelineID(2): h], size: .default)
        #expect(map.report(timeline: TimelineID(2), from: 2).gaps.isEmpty)

        // A segment of 2 missing: named on timeline 2. One of 1 before the switch: named on 1.
        segments.removeAll { $0 == seg(2, 7) || $0 == seg(1, 3) }
        map = WALArchiveMap(segments: segments, histories: [TimelineID(2): h], size: .default)
        r = map.report(timeline: TimelineID(2), from: 2)
        #expect(r.gaps == [.init(first: seg(1, 3), last: seg(1, 3), count: 1), .init(first: seg(2, 7), last: seg(2, 7), count: 1)])
        // Timeline 1's own report runs to its own newest segment (6).
        #expect(map.report(timeline: TimelineID(1), from: 2).newest == seg(1, 6))
    }

    @Test func aTimelineWithoutItsHistoryFile() {
        let map = WALArchiveMap(segments: [seg(1, 1), seg(3, 4)], histories: [:], size: .default)
        #expect(map.report(timeline: TimelineID(3), from: nil).historyMissing)
        #expect(!map.report(timeline: TimelineID(1), from: nil).historyMissing)
        #expect(!map.follows(TimelineID(3), from: TimelineID(1)))
    }
}
