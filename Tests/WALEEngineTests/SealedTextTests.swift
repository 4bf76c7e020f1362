import Foundation
import Testing
import WALECore
@testable import WALEEngine

/// The one seal of the sentinel and the partition manifests.
@Suite struct SealedTextTests {
    let text = "{\"wal_segment_backup_stop\": \"000000010000000000000002\", \"wal_segment_offset_backup_stop\": \"00000138\", \"expanded_size_bytes\": 123}"

    @Test func aSealIsTheLastKeyAndCoversEveryByte() throws {
        let sealed = SealedText.seal(text, key: "k_sha256")
        #expect(sealed.hasPrefix(String(text.dropLast()) + ",\"k_sha256\":\""))
        #expect(SealedText.check(sealed, key: "k_sha256") == .intact)
        #expect(SealedText.check(text, key: "k_sha256") == .unsealed)
        #expect(SealedText.check(sealed, key: "other") == .unsealed)
        var damaged = Array(sealed.utf8)
        damaged[Array(text.utf8).firstIndex(of: UInt8(ascii: "3"))!] = UInt8(ascii: "4")  // a digit of the stop offset
        guard case .altered = SealedText.check(String(decoding: damaged, as: UTF8.self), key: "k_sha256") else {
            Issue.record("a changed digit was not found")
            return
        }
        #expect(SealedText.check(String(sealed.dropLast(5)) + "\"}", key: "k_sha256") == .malformed)
        #expect(SealedText.check(String(sealed.dropLast(1)), key: "k_sha256") == .malformed)
    }

    @Test func sentinelsAreReadSealedOrNotAndRefusedWhenAltered() throws {
        // WAL-E's sentinels have no seal; ours do (a trailing newline is tolerated).
        #expect(try Sentinel.parse(stored: Array(text.utf8), key: "s").stopOffset == "00000138")
        let sealed = SealedText.seal(text, key: Sentinel.checksumKey)
        #expect(try Sentinel.parse(stored: Array((sealed + "\n").utf8), key: "s").stopSegment == "000000010000000000000002")
        let altered = sealed.replacingOccurrences(of: "\"expanded_size_bytes\": 123", with: "\"expanded_size_bytes\": 124")
        #expect(throws: WALEError.self) { try Sentinel.parse(stored: Array(altered.utf8), key: "s") }
        let stored = try Sentinel.parse(stored: Array(sealed.utf8), key: "s").storedText()
        #expect(SealedText.check(stored, key: Sentinel.checksumKey) == .intact)
    }
}
