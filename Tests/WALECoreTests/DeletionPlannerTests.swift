import Testing
@testable import WALECore

/// Synthetic archives: backups named by (timeline, segment), WAL on several timelines.
struct Fixture {
    var backups: [ArchiveState.Backup] = []
    var wal: [ArchiveState.WALObject] = []
    var ancestors: [TimelineID: Set<TimelineID>] = [:]

    static func seg(_ tli: UInt32, _ n: UInt32) -> WALSegmentName { WALSegmentName(timeline: TimelineID(tli), log: 0, seg: n) }

    mutating func backup(_ tli: UInt32, _ n: UInt32, time: Double, complete: Bool = true, permanent: Bool = false, activity: Double? = nil) {
        let name = BackupName(segment: Self.seg(tli, n), offsetText: "00000040")
        let dir = "basebackups_005/\(name)/"
        let sentinel = complete ? "basebackups_005/\(name)_backup_stop_sentinel.json" : nil
        backups.append(
            .init(
                name: name, complete: complete, startTime: time, lastActivity: activity ?? time, permanent: permanent,
                keys: [dir + "extended_version.txt", dir + "tar_partitions/part_00000000.tar.lzo"] + (sentinel.map { [$0] } ?? []),
                sentinelKey: sentinel))
    }

    mutating func segments(_ tli: UInt32, _ range: ClosedRange<UInt32>) {
        for n in range { wal.append(.init(key: "wal_005/\(Self.seg(tli, n)).lzo", file: .segment(Self.seg(tli, n)))) }
    }

    var state: ArchiveState { ArchiveState(backups: backups, wal: wal, ancestors: ancestors) }

    static func walKeys(_ p: DeletionPlan) -> Set<String> { Set(p.deletions.filter { $0.kind == .wal }.map(\.key)) }
    static func w(_ tli: UInt32, _ n: UInt32) -> String { "wal_005/\(seg(tli, n)).lzo" }
}

@Suite struct DeletionPlannerTests {
    let planner = DeletionPlanner(now: 10_000)

    @Test func retainKeepsNewestAndTheWALTheyNeed() throws {
        var f = Fixture()
        f.backup(1, 2, time: 100)
        f.backup(1, 5, time: 200)
        f.backup(1, 9, time: 300)
        f.segments(1, 1...12)
        let p = try planner.plan(.retain(count: 2, minAge: nil), f.state)
        #expect(p.deletedBackups.map(\.segment.seg) == [2])
        #expect(p.keptBackups.map(\.segment.seg) == [5, 9])
        #expect(Fixture.walKeys(p) == Set((1...4).map { Fixture.w(1, $0) }))
        // The sentinel goes first, then the backup's other objects.
        #expect(p.deletions.first?.kind == .sentinel)
        #expect(p.deletions.prefix(3).map(\.kind) == [.sentinel, .versionFile, .volume])
    }

    @Test func retainZeroIsRefusedAndNoBackupsDeletesNothing() throws {
        var f = Fixture()
        f.segments(1, 1...5)
        #expect(throws: WALEError.self) { try planner.plan(.retain(count: 0, minAge: nil), f.state) }
        let p = try planner.plan(.retain(count: 3, minAge: nil), f.state)
        #expect(p.deletions.isEmpty)  // WAL may be all there is before the first backup
        #expect(p.notes.first?.0 == "Not deleting any data.")
    }

    @Test func timelineResetDoesNotDeleteTheNewestBackups() throws {
        // Timeline 2 branched from timeline 1 at segment 3 (a restore of an old backup, promoted):
        // its newest backups have *lower* segment numbers than the old timeline-1 ones.
        var f = Fixture()
        f.backup(1, 2, time: 100)
        f.backup(1, 20, time: 200)
        f.backup(2, 4, time: 300)
        f.backup(2, 6, time: 400)
        f.segments(1, 1...22)
        f.segments(2, 3...8)
        f.ancestors[TimelineID(2)] = [TimelineID(1)]
        let p = try planner.plan(.retain(count: 2, minAge: nil), f.state)
        #expect(Set(p.keptBackups.map(\.segment)) == [Fixture.seg(2, 4), Fixture.seg(2, 6)])
        #expect(Set(p.deletedBackups.map(\.segment)) == [Fixture.seg(1, 2), Fixture.seg(1, 20)])
        // Timeline 2 WAL from its oldest kept backup on is kept; timeline 1 is needed by no kept backup.
        let deleted = Fixture.walKeys(p)
        #expect(!deleted.contains(Fixture.w(2, 4)) && !deleted.contains(Fixture.w(2, 8)))
        #expect(deleted.contains(Fixture.w(2, 3)))
        #expect(deleted.contains(Fixture.w(1, 21)))
    }

    @Test func laterTimelinesBranchingFromAKeptBackupAreKept() throws {
        var f = Fixture()
        f.backup(1, 2, time: 100)
        f.backup(1, 10, time: 200)
        f.segments(1, 1...14)
        f.segments(2, 12...15)  // branched from 1 after the kept backup
        f.segments(3, 13...16)  // branched from 2
        f.ancestors[TimelineID(2)] = [TimelineID(1)]
        f.ancestors[TimelineID(3)] = [TimelineID(1), TimelineID(2)]
        f.wal.append(.init(key: "wal_005/00000002.history.lzo", file: .history(TimelineID(2))))
        f.wal.append(.init(key: "wal_005/000000020000000000000010.partial.lzo", file: .partial(Fixture.seg(2, 16))))
        f.wal.append(
            .init(key: "wal_005/000000010000000000000002.00000028.backup.lzo", file: .backupHistory(Fixture.seg(1, 2), offset: 0x28)))
        let p = try planner.plan(.retain(count: 1, minAge: nil), f.state)
        let deleted = Set(p.deletions.map(\.key))
        #expect(deleted.isSuperset(of: (1...9).map { Fixture.w(1, $0) }))
        #expect(deleted.contains("wal_005/000000010000000000000002.00000028.backup.lzo"))
        for k in (10...14).map({ Fixture.w(1, $0) }) + (12...15).map({ Fixture.w(2, $0) }) + (13...16).map({ Fixture.w(3, $0) }) {
            #expect(!deleted.contains(k), "\(k)")
        }
        #expect(!deleted.contains("wal_005/00000002.history.lzo"))
        #expect(!deleted.contains("wal_005/000000020000000000000010.partial.lzo"))
    }

    @Test func unknownAncestryIsKept() throws {
        var f = Fixture()
        f.backup(1, 10, time: 200)
        f.segments(4, 11...12)  // timeline 4 with no history file in the archive
        let p = try planner.plan(.retain(count: 1, minAge: nil), f.state)
        #expect(Fixture.walKeys(p).isEmpty)
    }

    @Test func permanentBackupsAndTheirWALSurvive() throws {
        var f = Fixture()
        f.backup(1, 2, time: 100, permanent: true)
        f.backup(1, 5, time: 200)
        f.backup(1, 9, time: 300)
        f.segments(1, 1...10)
        let p = try planner.plan(.retain(count: 1, minAge: nil), f.state)
        #expect(p.deletedBackups.map(\.segment.seg) == [5])
        #expect(Set(p.keptBackups.map(\.segment.seg)) == [2, 9])
        #expect(Fixture.walKeys(p) == [Fixture.w(1, 1)])
        let all = try planner.plan(.everything, f.state)
        #expect(Set(all.keptBackups.map(\.segment.seg)) == [2])
        #expect(Fixture.walKeys(all) == [Fixture.w(1, 1)])
    }

    @Test func minAgeKeepsYoungBackups() throws {
        var f = Fixture()
        f.backup(1, 2, time: 9_000)
        f.backup(1, 5, time: 9_500)
        f.backup(1, 9, time: 9_900)
        let p = try planner.plan(.retain(count: 1, minAge: 800), f.state)
        #expect(p.deletedBackups.map(\.segment.seg) == [2])
    }

    @Test func incompleteBackupsSweptUnlessPossiblyInProgress() throws {
        var f = Fixture()
        f.backup(1, 2, time: 100, complete: false, activity: 150)  // failed long ago
        f.backup(1, 5, time: 200)
        f.backup(1, 7, time: 9_990, complete: false, activity: 9_995)  // newer than every complete one
        f.backup(1, 6, time: 300, complete: false, activity: 9_990)  // touched a moment ago
        f.segments(1, 1...9)
        let p = try planner.plan(.retain(count: 1, minAge: nil), f.state)
        #expect(Set(p.inProgress.map(\.segment.seg)) == [6, 7])
        let deleted = Set(p.deletions.map(\.key))
        #expect(deleted.contains("basebackups_005/base_000000010000000000000002_00000040/extended_version.txt"))
        #expect(!deleted.contains { $0.contains("00000007_") || $0.contains("00000006_") })
        #expect(Fixture.walKeys(p) == Set((1...4).map { Fixture.w(1, $0) }))
    }

    @Test func beforeByNameSegmentAndTime() throws {
        var f = Fixture()
        f.backup(1, 2, time: 100)
        f.backup(1, 5, time: 200)
        f.backup(1, 9, time: 300)
        f.segments(1, 1...10)
        let byName = try planner.plan(.beforeName("base_000000010000000000000009_00000040"), f.state)
        #expect(byName.deletedBackups.map(\.segment.seg) == [2, 5])
        #expect(Fixture.walKeys(byName) == Set((1...8).map { Fixture.w(1, $0) }))
        let bySegment = try planner.plan(.beforeName("000000010000000000000005"), f.state)
        #expect(bySegment.deletedBackups.map(\.segment.seg) == [2])
        #expect(Fixture.walKeys(bySegment) == Set((1...4).map { Fixture.w(1, $0) }))
        let byTime = try planner.plan(.beforeTime(250), f.state)
        #expect(byTime.deletedBackups.map(\.segment.seg) == [2, 5])
        #expect(throws: WALEError.self) { try planner.plan(.beforeName("nonsense"), f.state) }
    }

    @Test func oldVersionsNeedsACurrentBackup() throws {
        var f = Fixture()
        var s = f.state
        s.obsoleteKeys = ["basebackups_004/x", "wal_004/y.lzo"]
        #expect(throws: WALEError.self) { try planner.plan(.oldVersions, s) }
        f.backup(1, 2, time: 100)
        s = f.state
        s.obsoleteKeys = ["basebackups_004/x", "wal_004/y.lzo"]
        #expect(try planner.plan(.oldVersions, s).deletions.map(\.key) == ["basebackups_004/x", "wal_004/y.lzo"])
    }

    @Test func parsesTimesAndDurations() {
        #expect(parseISO8601("1970-01-01") == 0)
        #expect(parseISO8601("2026-11-21T05:00:00Z") == 1_795_237_200)
        #expect(parseISO8601("2026-11-21 06:00:00+01:00") == 1_795_237_200)
        #expect(parseISO8601("2026-11-21T05:00:00.5") == 1_795_237_200.5)
        #expect(parseISO8601("2026-13-01") == nil && parseISO8601("yesterday") == nil)
        #expect(parseDuration("7d") == 604_800 && parseDuration("90") == 90 && parseDuration("x") == nil)
        #expect(ArchiveState.parseHistory("1\t0/3000000\tno recovery target specified\n2\t0/5000000\tx\n") == [TimelineID(1), TimelineID(2)])
    }
}
