import Testing
import Foundation
@testable import WALEEngine

/// Claims of asynchronous archiving: one holder per segment, released with the process, files of
/// archived segments swept where nobody holds them.
@Suite struct PushAheadClaimTests {
    func walDirectory() -> String {
        let dir = "/tmp/wale-ahead-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try? FileManager.default.createDirectory(atPath: dir + "/archive_status", withIntermediateDirectories: true)
        return dir
    }

    @Test func aClaimIsHeldUntilReleasedAndOnlyOneHolderAtATime() throws {
        let dir = walDirectory()
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }
        let claims = AheadClaims(walDirectory: dir)
        let seg = "000000010000000000000001"
        let first = try #require(claims.tryClaim(seg))
        // flock is per open file description: a second open in this process is another holder.
        #expect(claims.tryClaim(seg) == nil)
        let start = Date()
        let (none, waited) = claims.claim(seg, timeout: 0.2)
        #expect(none == nil && waited)
        #expect(Date().timeIntervalSince(start) >= 0.2)
        first.release()
        let (again, waitedAgain) = claims.claim(seg, timeout: 5)
        #expect(again != nil && !waitedAgain)
        again?.release()
    }

    @Test func anUnopenableClaimIsNotWaitedFor() throws {
        let dir = walDirectory()
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }
        let claims = AheadClaims(walDirectory: dir)
        // A directory where the claim file should be: it cannot be opened for writing.
        try FileManager.default.createDirectory(atPath: claims.root + "/000000010000000000000002", withIntermediateDirectories: true)
        let start = Date()
        let (claim, waited) = claims.claim("000000010000000000000002", timeout: 30)
        #expect(claim == nil && !waited)
        #expect(Date().timeIntervalSince(start) < 5)
    }

    @Test func oneHelperAtATime() throws {
        let dir = walDirectory()
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }
        let claims = AheadClaims(walDirectory: dir)
        #expect(!claims.helperRunning)
        let lock = try #require(claims.lockHelper())
        #expect(claims.helperRunning)
        #expect(claims.lockHelper() == nil)
        close(lock)
        #expect(!claims.helperRunning)
    }

    @Test func sweepRemovesOnlyUnheldClaimsOfSegmentsNoLongerReady() throws {
        let dir = walDirectory()
        defer { _ = try? FileManager.default.removeItem(atPath: dir) }
        let claims = AheadClaims(walDirectory: dir)
        let (archived, held, ready) = ("000000010000000000000003", "000000010000000000000004", "000000010000000000000005")
        FileManager.default.createFile(atPath: dir + "/archive_status/\(ready).ready", contents: nil)
        try #require(claims.tryClaim(archived)).release()
        try #require(claims.tryClaim(ready)).release()
        let holding = try #require(claims.tryClaim(held))
        claims.sweep()
        let left = try FileManager.default.contentsOfDirectory(atPath: claims.root).sorted()
        #expect(left == [held, ready])
        holding.release()
        claims.sweep()
        #expect(try FileManager.default.contentsOfDirectory(atPath: claims.root) == [ready])
    }
}
