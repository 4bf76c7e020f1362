import Testing
import Foundation
import WALECore
import WALECodec
@testable import WALEEngine

/// The raw content's digest in a WAL object's metadata: written as XXH3-128, read under either
/// algorithm's key (objects written before 1.3 carry SHA-256).
@Suite struct WALPushDigestTests {
    @Test func newObjectsCarryXXH3AndOldOnesAreStillRead() {
        let x = ContentDigest(.xxh3, hex: "06b05ab6733a618578af5f94892f3950", length: 16 << 20)
        let written = WALPush.metadata(x)
        #expect(written == ["wale-content-xxh3-128": x.hex, "wale-content-size": "16777216"])
        #expect(WALPush.digest(in: written) == x)
        let old = ["wale-content-sha256": String(repeating: "ab", count: 32), "wale-content-size": "3"]
        #expect(WALPush.digest(in: old) == ContentDigest(.sha256, hex: String(repeating: "ab", count: 32), length: 3))
        // Without a length, or without a digest, the object is compared by reading it.
        #expect(WALPush.digest(in: ["wale-content-sha256": "ab"]) == nil)
        #expect(WALPush.digest(in: ["wale-content-size": "3"]) == nil)
        #expect(WALPush.digest(in: nil) == nil)
        // Hex in either case (another tool may write upper case): compared as lower case.
        #expect(WALPush.digest(in: ["wale-content-xxh3-128": x.hex.uppercased(), "wale-content-size": "16777216"]) == x)
        #expect(WALPush.contentDigestAlgorithm == .xxh3)
    }
}

/// A push that runs short of upload memory reads its segment again: only the same file.
@Suite struct WALPushRereadTests {
    @Test func aReplacedOrResizedFileIsNotReadAgain() throws {
        let dir = "/tmp/wale-reread-\(getpid())"
        mkdir(dir, 0o700)
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/000000010000000000000001"
        func write(_ p: String, _ bytes: [UInt8]) { FileManager.default.createFile(atPath: p, contents: Data(bytes)) }
        write(path, [UInt8](repeating: 1, count: 8192))
        var first = stat()
        #expect(stat(path, &first) == 0)
        #expect(throws: Never.self) { _ = try WALPush.reopen(path, as: first) }
        // Replaced by rename (another inode), though of the same size.
        write(dir + "/other", [UInt8](repeating: 2, count: 8192))
        #expect(rename(dir + "/other", path) == 0)
        #expect(throws: WALEError.self) { _ = try WALPush.reopen(path, as: first) }
        var second = stat()
        #expect(stat(path, &second) == 0)
        // The same inode, grown.
        let fd = open(path, O_WRONLY | O_APPEND)
        #expect(Foundation.write(fd, [UInt8(3)], 1) == 1)
        close(fd)
        do {
            _ = try WALPush.reopen(path, as: second)
            Issue.record("a resized file was read again")
        } catch let e as WALEError {
            #expect(e.kind == .io && e.message.contains("replaced or changed size"))
        }
    }

    /// WAL-E's rate field is Python's '%02g' of KiB/s.
    @Test func rateIsRenderedAsPythonsPercent02g() {
        #expect(formatRate(316088) == "316088")
        #expect(formatRate(1_234_567.8) == "1.23457e+06")
        #expect(formatRate(0.5) == "0.5")
        #expect(formatRate(7) == "07")
    }
}
