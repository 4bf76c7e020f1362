import Testing
@testable import WALECore

/// Retention with incremental backups: chains are kept or deleted whole.
@Suite struct DeletionPlannerChainTests {
    let planner = DeletionPlanner(now: 10_000)

    /// A full backup at segment `n`, and incrementals over it at the following segments.
    func chain(_ f: inout Fixture, full n: UInt32, time: Double, incrementals: [UInt32], permanent: Set<UInt32> = []) {
        f.backup(1, n, time: time)
        var parent = f.backups.last!.name
        for (i, m) in incrementals.enumerated() {
            let name = BackupName(segment: Fixture.seg(1, m), offsetText: "00000040", kind: .incremental)
            let dir = "basebackups_005/\(name)/"
            f.backups.append(
                .init(
                    name: name, complete: true, startTime: time + Double(i + 1), lastActivity: time + Double(i + 1),
                    permanent: permanent.contains(m), keys: [dir + "tar_partitions/part_00000000.tar.lzo", "basebackups_005/\(name)_backup_stop_sentinel.json"],
                    sentinelKey: "basebackups_005/\(name)_backup_stop_sentinel.json", parent: parent))
            parent = name
        }
    }

    func segs(_ names: [BackupName]) -> [String] { names.map { "\($0.kind.rawValue)\($0.segment.seg)" }.sorted() }

    @Test func retainCountsFullBackupsAndTakesTheirIncrementalsAlong() throws {
        var f = Fixture()
        chain(&f, full: 2, time: 100, incrementals: [3, 4])
        chain(&f, full: 6, time: 200, incrementals: [7])
        f.segments(1, 1...9)
        let p = try planner.plan(.retain(count: 1, minAge: nil), f.state)
        #expect(segs(p.deletedBackups) == ["base_2", "incr_3", "incr_4"])
        #expect(segs(p.keptBackups) == ["base_6", "incr_7"])
        #expect(Fixture.walKeys(p) == Set((1...5).map { Fixture.w(1, $0) }))
        // Two full backups to keep: nothing goes, though there are five backups.
        #expect(try planner.plan(.retain(count: 2, minAge: nil), f.state).deletedBackups.isEmpty)
    }

    @Test func aKeptIncrementalKeepsEveryBackupItIsBuiltOn() throws {
        var f = Fixture()
        chain(&f, full: 2, time: 100, incrementals: [3, 4])
        f.segments(1, 1...6)
        // `before` the second incremental would delete its parents: they stay, and say why.
        let p = try planner.plan(.beforeName(BackupName(segment: Fixture.seg(1, 4), offsetText: "00000040", kind: .incremental).description), f.state)
        #expect(p.deletedBackups.isEmpty)
        #expect(segs(p.keptBackups) == ["base_2", "incr_3", "incr_4"])
        #expect(p.notes.contains { $0.0.hasPrefix("keeping base_") })
        // A permanent incremental keeps its chain through retention.
        var g = Fixture()
        chain(&g, full: 2, time: 100, incrementals: [3, 4], permanent: [3])
        chain(&g, full: 6, time: 200, incrementals: [])
        let q = try planner.plan(.retain(count: 1, minAge: nil), g.state)
        #expect(segs(q.deletedBackups) == ["incr_4"])
        #expect(segs(q.keptBackups) == ["base_2", "base_6", "incr_3"])
    }
}
