import Testing
@testable import WALEEngine

@Suite struct BackupPushTests {
    /// pg_stat_archiver's last archived WAL counts for a segment when it is that segment, a
    /// `.backup` or `.partial` file of it, or a later segment on the same timeline.
    @Test func archivedByPostgreSQL() {
        let seg = "00000001000000020000008A"
        #expect(BackupPush.archived(seg, last: seg))
        #expect(BackupPush.archived(seg, last: "00000001000000020000008A.00000028.backup"))
        #expect(BackupPush.archived(seg, last: "00000001000000020000008B"))
        #expect(BackupPush.archived(seg, last: "000000010000000300000000.partial"))
        #expect(!BackupPush.archived(seg, last: "000000010000000200000089"))
        #expect(!BackupPush.archived(seg, last: "00000001000000010000008F"))
        // Another timeline, a history file, nothing yet: not this segment's archiving.
        #expect(!BackupPush.archived(seg, last: "00000002000000020000008A"))
        #expect(!BackupPush.archived(seg, last: "00000002.history"))
        #expect(!BackupPush.archived(seg, last: nil))
        #expect(!BackupPush.archived(seg, last: ""))
    }
}
