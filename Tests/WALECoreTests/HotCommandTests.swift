import Testing
import WALECore

/// The fast path takes only the plain forms PostgreSQL runs; everything else is ArgumentParser's.
@Suite struct HotCommandTests {
    @Test func plainFormsAreRecognised() {
        #expect(HotCommand.parse(["wal-push", "pg_wal/000000010000000000000001"]) == .walPush(terse: false, segment: "pg_wal/000000010000000000000001"))
        #expect(HotCommand.parse(["--terse", "wal-push", "p"]) == .walPush(terse: true, segment: "p"))
        #expect(HotCommand.parse(["wal-fetch", "000000010000000000000001", "pg_wal/RECOVERYXLOG"])
            == .walFetch(terse: false, segment: "000000010000000000000001", destination: "pg_wal/RECOVERYXLOG"))
        #expect(HotCommand.parse(["--terse", "wal-fetch", "a", "b"]) == .walFetch(terse: true, segment: "a", destination: "b"))
    }

    @Test func everythingElseIsLeftToArgumentParser() {
        for args in [
            [], ["--terse"], ["wal-push"], ["wal-push", "a", "b"], ["wal-fetch", "a"], ["wal-fetch", "a", "b", "c"],
            ["wal-push", "--help"], ["wal-push", "-h"], ["wal-push", "-p", "4", "x"], ["wal-push", "x", "--pool-size=2"],
            ["wal-fetch", "--prefetch", "0", "a", "b"], ["wal-fetch", "a", "-"], ["wal-push", "--", "x"], ["wal-push", ""],
            ["--file-prefix", "file:///x", "wal-push", "p"], ["--terse", "--terse", "wal-push", "p"], ["wal-push", "p", "--terse"],
            ["backup-push", "d"], ["version"], ["WAL-PUSH", "p"], ["wal-prefetch", "a", "b"],
        ] {
            #expect(HotCommand.parse(args) == nil, "\(args)")
        }
    }
}
