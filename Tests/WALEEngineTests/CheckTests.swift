import Testing
@testable import WALEEngine

@Suite struct CheckTests {
    /// archive_command must name exactly the checked prefix, not one it is a prefix of.
    @Test func namesThePrefixExactly() {
        let p = "file://localhost/var/backups/pg"
        #expect(Check.names(p, in: "wal-e --file-prefix file://localhost/var/backups/pg wal-push %p"))
        #expect(Check.names(p, in: "env WALE_FILE_PREFIX=file://localhost/var/backups/pg/ wal-e wal-push %p"))
        #expect(Check.names(p, in: "wal-e --file-prefix 'file://localhost/var/backups/pg'"))
        #expect(Check.names(p + "/", in: "WALE_FILE_PREFIX=file://localhost/var/backups/pg wal-e wal-push %p"))
        #expect(Check.names(p, in: "x=file://localhost/var/backups/pg-old y=file://localhost/var/backups/pg"))
        #expect(!Check.names(p, in: "WALE_FILE_PREFIX=file://localhost/var/backups/pg-other wal-e wal-push %p"))
        #expect(!Check.names(p, in: "WALE_FILE_PREFIX=file://localhost/var/backups/pg/sub wal-e wal-push %p"))
        #expect(!Check.names(p, in: "wal-e wal-push %p"))
    }
}
