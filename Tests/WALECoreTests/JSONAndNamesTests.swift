import Testing
@testable import WALECore

@Suite struct JSONTests {
    @Test func serialisesLikePythonJsonDumps() {
        let v = JSON.object([
            ("wal_segment_backup_stop", .string("000000010000000000000001")), ("expanded_size_bytes", .int(27_044_580)),
            ("spec", .object([("base_prefix", .string("/tmp/pgtest/data/")), ("tablespaces", .array([.string("16388")]))])),
            ("esc", .string("a\"b\\c\nd\u{1}é")), ("t", .bool(true)), ("n", .null),
        ])
        #expect(
            v.serialized()
                == #"{"wal_segment_backup_stop": "000000010000000000000001", "expanded_size_bytes": 27044580, "spec": {"base_prefix": "/tmp/pgtest/data/", "tablespaces": ["16388"]}, "esc": "a\"b\\c\nd\u0001\u00e9", "t": true, "n": null}"#
        )
    }

    @Test func parsesAndRoundTrips() throws {
        let text = #"{"a": [1, -2.5, "x\u00e9\n", {"b": null}], "c": false}"#
        let v = try JSON.parse(text)
        #expect(v["a"]?.array?.count == 4 && v["a"]?.array?[0].int == 1 && v["c"]?.bool == false)
        #expect(v["a"]?.array?[2].string == "xé\n")
        #expect(try JSON.parse(v.serialized()) == v)
        for bad in ["", "{", "[1,]", "{\"a\" 1}", "\"open", "{} x", "nul"] {
            #expect(throws: JSON.ParseError.self) { try JSON.parse(bad) }
        }
    }
}

@Suite struct BackupNameTests {
    @Test func namesAndKeys() throws {
        let n = try #require(BackupName("base_000000010000000000000002_00000040"))
        #expect(n.segment.description == "000000010000000000000002" && n.offsetText == "00000040")
        let p = try StoragePrefix(parsing: "s3://b/x")
        #expect(n.sentinelKey(p) == "x/basebackups_005/base_000000010000000000000002_00000040_backup_stop_sentinel.json")
        #expect(n.partitionKey(p, 3, suffix: ".lzo") == "x/basebackups_005/base_000000010000000000000002_00000040/tar_partitions/part_00000003.tar.lzo")
        #expect(BackupName("base_000000010000000000000002_0000004") == nil)
        #expect(BackupName("base_00000001000000000000002_000000400") == nil)
        #expect(BackupName.offsetText(40) == "00000040")
        #expect(BackupName.offsetText(123_456_789) == "12345678")  // WAL-E's lpad truncates
    }
}
