import Testing
import WALECore
@testable import WALEPostgres

@Suite struct ConnectionSettingsTests {
    @Test func libpqEnvironment() throws {
        let s = try ConnectionSettings.resolve(env: ["PGHOST": "/run/pg,db.local", "PGPORT": "5433", "PGUSER": "u"], osUser: "os", pgpass: nil)
        #expect(s.endpoints == [.unixSocket(path: "/run/pg/.s.PGSQL.5433"), .tcp(host: "db.local", port: 5433)])
        #expect(s.user == "u" && s.database == "postgres" && s.password == nil)
        let d = try ConnectionSettings.resolve(env: [:], osUser: "postgres", pgpass: nil)
        #expect(d.endpoints == [.unixSocket(path: "/var/run/postgresql/.s.PGSQL.5432"), .unixSocket(path: "/tmp/.s.PGSQL.5432")])
        #expect(d.user == "postgres")
        #expect(throws: WALEError.self) { try ConnectionSettings.resolve(env: ["PGPORT": "x"], osUser: "p", pgpass: nil) }
    }

    @Test func pgpassMatching() throws {
        let pgpass = """
            # comment
            other:5432:*:*:nope
            db.local:5433:postgres:u:s\\:ecret\\\\x
            *:*:*:u:fallback
            """
        #expect(ConnectionSettings.lookup(pgpass: pgpass, host: "db.local", port: 5433, database: "postgres", user: "u") == "s:ecret\\x")
        #expect(ConnectionSettings.lookup(pgpass: pgpass, host: "localhost", port: 5432, database: "x", user: "u") == "fallback")
        #expect(ConnectionSettings.lookup(pgpass: pgpass, host: "localhost", port: 5432, database: "x", user: "v") == nil)
        let s = try ConnectionSettings.resolve(env: ["PGHOST": "db.local", "PGPORT": "5433", "PGUSER": "u"], osUser: "o", pgpass: pgpass)
        #expect(s.password == "s:ecret\\x")
        let e = try ConnectionSettings.resolve(env: ["PGHOST": "db.local", "PGUSER": "u", "PGPASSWORD": "env"], osUser: "o", pgpass: pgpass)
        #expect(e.password == "env")
    }

    @Test func controlDataParsing() throws {
        let out = """
            Database cluster state:               shut down
            Latest checkpoint's REDO location:    0/8000028
            Latest checkpoint's REDO WAL file:    000000030000000000000008
            Latest checkpoint's TimeLineID:       3
            Bytes per WAL segment:                16777216
            Database system identifier:           7300000000000000001
            """
        let c = try ControlData.parse(out, version: "15")
        #expect(c.redo == LSN(0x800_0028) && c.timeline == TimelineID(3) && c.segmentSize == .default)
        // WAL-E named this backup base_...00000080_00000080; the right name:
        #expect(c.redo.segment(timeline: c.timeline, size: c.segmentSize).description == "000000030000000000000008")
        #expect(throws: WALEError.self) { try ControlData.parse(out.replacingCrashState(), version: "15") }
    }
}

extension String {
    func replacingCrashState() -> String {
        split(separator: "\n").map { $0.hasPrefix("Database cluster state") ? "Database cluster state: in production" : String($0) }
            .joined(separator: "\n")
    }
}
