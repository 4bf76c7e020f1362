import Testing
import WALECore
@testable import WALEEngine

/// WALE_RESTORE_DIRECT: whether backup-fetch writes its large files around the page cache.
@Suite struct RestoreWritesTests {
    @Test func theSettingIsParsedOrRefused() throws {
        #expect(try RestoreWrites.from(env: [:]) == .off)
        #expect(try RestoreWrites.from(env: ["WALE_RESTORE_DIRECT": ""]) == .off)
        #expect(try RestoreWrites.from(env: ["WALE_RESTORE_DIRECT": "ON"]) == .on)
        #expect(try RestoreWrites.from(env: ["WALE_RESTORE_DIRECT": "off"]) == .off)
        #expect(BackupFetch.Options().restoreWrites == .off)
        for bad in ["yes", "auto", "1"] {
            do {
                _ = try RestoreWrites.from(env: ["WALE_RESTORE_DIRECT": bad])
                Issue.record("accepted \(bad)")
            } catch let e as WALEError {
                #expect(e.kind == .user)
                #expect(e.message.contains("WALE_RESTORE_DIRECT=\(bad) is neither on nor off"))
            }
        }
    }
}
