import Testing
@testable import WALECore

@Suite struct StoragePrefixTests {
    @Test func pathPrefixAndKeys() throws {
        let s3 = try StoragePrefix(parsing: "s3://bucket/a/b")
        #expect(s3.scheme == .s3 && s3.storeName == "bucket" && s3.pathPrefix == "a/b/")
        #expect(s3.walKey("000000010000000000000001", suffix: ".lzo") == "a/b/wal_005/000000010000000000000001.lzo")
        #expect(s3.baseBackupsDirectory == "a/b/basebackups_005/")
        #expect(try StoragePrefix(parsing: "s3://bucket").pathPrefix == "")
        #expect(try StoragePrefix(parsing: "s3://bucket/x/").pathPrefix == "x/")
        let f = try StoragePrefix(parsing: "file://localhost/backups/pg")
        #expect(f.scheme == .file && f.pathPrefix == "backups/pg/")
        #expect(f.url(forKey: f.walKey("X", suffix: ".lzo")) == "file://localhost/backups/pg/wal_005/X.lzo")
        #expect(try StoragePrefix(parsing: "file:///backups/pg").pathPrefix == "backups/pg/")
    }

    @Test func rejectsBadPrefixes() {
        #expect(throws: StoragePrefix.ParseError.unknownScheme("ftp")) { try StoragePrefix(parsing: "ftp://x/y") }
        #expect(throws: StoragePrefix.ParseError.notAURL("/var/backups")) { try StoragePrefix(parsing: "/var/backups") }
        #expect(throws: StoragePrefix.ParseError.missingStoreName("s3:///x")) { try StoragePrefix(parsing: "s3:///x") }
    }
}

@Suite struct ConfigurationTests {
    @Test func prefixPrecedenceFollowsWalE() throws {
        let env = [
            "WALE_S3_PREFIX": "s3://b/env-s3", "WALE_FILE_PREFIX": "file://localhost/env-file",
            "WALE_SWIFT_PREFIX": "swift://c/x", "WALE_WABS_PREFIX": "wabs://c/y",
        ]
        // Flags first, in WAL-E's order, whatever scheme their values have.
        var f = GlobalFlags(gsPrefix: "gs://g/flag", s3Prefix: "s3://b/flag")
        #expect(try Configuration.resolve(f, env: env).prefix.raw == "gs://g/flag")
        f = GlobalFlags(s3Prefix: "file://localhost/via-s3-flag")
        let c = try Configuration.resolve(f, env: env)
        #expect(c.prefix.scheme == .file && c.prefixSource == "--s3-prefix")
        // Then the environment: FILE, GS, S3, SWIFT, WABS.
        #expect(try Configuration.resolve(GlobalFlags(), env: env).prefix.raw == "file://localhost/env-file")
        #expect(try Configuration.resolve(GlobalFlags(), env: ["WALE_SWIFT_PREFIX": "swift://c/x", "WALE_WABS_PREFIX": "wabs://c/y"]).prefix.scheme == .swift)
        // Empty values are skipped.
        #expect(try Configuration.resolve(GlobalFlags(filePrefix: ""), env: ["WALE_FILE_PREFIX": "", "WALE_WABS_PREFIX": "wabs://c/y"]).prefix.scheme == .wabs)
    }

    @Test func noPrefixIsAUserError() {
        #expect(throws: WALEError.self) { try Configuration.resolve(GlobalFlags(), env: [:]) }
        do {
            _ = try Configuration.resolve(GlobalFlags(), env: ["WALE_S3_PREFIX": ""])
            Issue.record("expected an error")
        } catch {
            #expect(error.kind == .user && error.message == "no storage prefix defined" && error.exitCode == .userError)
        }
    }

    @Test func otherSettings() throws {
        let base = ["WALE_FILE_PREFIX": "file://localhost/a"]
        let d = try Configuration.resolve(GlobalFlags(), env: base)
        #expect(d.logDestinations == [.stderr, .syslog] && d.compressionName == "lzop" && d.retryAttempts == 5)
        #expect(d.syslogFacility == 1 << 3 && d.warnings.isEmpty)
        var env = base
        env["WALE_LOG_DESTINATION"] = "stderr"
        env["WALE_SYSLOG_FACILITY"] = "nonsense"
        env["WALE_RETRIES"] = "0"
        env["WALE_COMPRESSION"] = "zstd"
        let c = try Configuration.resolve(GlobalFlags(), env: env)
        #expect(c.logDestinations == [.stderr] && c.compressionName == "zstd" && c.retryAttempts == 5)
        #expect(c.warnings.contains("invalid syslog facility level specified"))
        #expect(c.warnings.contains { $0.hasPrefix("WALE_RETRIES=0 ignored") })
        // The flag beats the environment.
        #expect(try Configuration.resolve(GlobalFlags(compression: "lz4"), env: env).compressionName == "lz4")
        #expect(throws: WALEError.self) { try Configuration.resolve(GlobalFlags(compression: "gzip"), env: base) }
        // gpg encryption (refused before it was supported): the key ID, the flag beating the
        // environment, an empty value meaning none.
        #expect(try Configuration.resolve(GlobalFlags(), env: env).gpgKeyID == nil)
        env["WALE_GPG_KEY_ID"] = "KEY"
        #expect(try Configuration.resolve(GlobalFlags(), env: env).gpgKeyID == "KEY")
        #expect(try Configuration.resolve(GlobalFlags(gpgKeyID: "FLAG"), env: env).gpgKeyID == "FLAG")
        env["WALE_GPG_KEY_ID"] = ""
        #expect(try Configuration.resolve(GlobalFlags(), env: env).gpgKeyID == nil)
    }

    @Test func exitCodesAreStableAndBelowPostgresFatalRange() {
        #expect(WALEExitCode.notFound.rawValue == 1)
        #expect(WALEExitCode.usage.rawValue == 2)
        #expect(WALEError(.corrupt, "x").exitCode.rawValue == 65)
        #expect(WALEError(.io, "x").exitCode.rawValue == 74)
        #expect(WALEError(.overwriteRefused, "x").exitCode.rawValue == 3)
        #expect(WALEError(.notWAL, "x").exitCode.rawValue == 4)
        for c in WALEExitCode.allCases where c != .noSubcommand { #expect(c.rawValue <= 125) }
    }
}

@Suite struct LogFormatTests {
    @Test func walEShape() {
        let r = LogRecord(
            logger: "wal_e.main", level: .info, message: "starting WAL-E", detail: "The subcommand is \"backup-push\".",
            structured: ["state": "begin", "action": "push-wal"])
        let t = UTCTime(year: 2026, month: 11, day: 21, hour: 4, minute: 17, second: 43, microsecond: 913_763)
        #expect(
            r.formatted(time: t, pid: 17032) == """
                wal_e.main   INFO     MSG: starting WAL-E
                        DETAIL: The subcommand is "backup-push".
                        STRUCTURED: time=2026-11-21T04:17:43.913763-00 pid=17032 action=push-wal state=begin
                """)
        let w = LogRecord(logger: "wal_e.worker.upload", level: .warning, message: "a\nb", hint: "h")
        #expect(
            w.formatted(time: t, pid: 1)
                == "wal_e.worker.upload WARNING  MSG: a\n        b\n        HINT: h\n        STRUCTURED: time=2026-11-21T04:17:43.913763-00 pid=1")
    }

    @Test func utcTimeFromEpoch() {
        #expect(UTCTime(epochSeconds: 0).walEFormat == "1970-01-01T00:00:00.000000-00")
        #expect(UTCTime(epochSeconds: 1_795_234_663.913763).isoNoZone.hasPrefix("2026-11-21T"))
        #expect(UTCTime(epochSeconds: 951_782_400).isoNoZone == "2000-02-29T00:00:00.000000")
        #expect(UTCTime(epochSeconds: 4_107_542_399.5).isoNoZone == "2100-02-28T23:59:59.500000")
    }

    @Test func levelsFilter() {
        final class Box: @unchecked Sendable { var records: [LogRecord] = [] }
        let box = Box()
        let terse = Logger(name: "x", minimumLevel: .warning) { box.records.append($0) }
        terse.info("hidden")
        terse.warning("shown")
        terse.error("shown too")
        #expect(box.records.map(\.message) == ["shown", "shown too"])
    }
}
