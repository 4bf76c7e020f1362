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
        // The same reading as every on/off setting (Configuration.onOff): yes and 1 are on, no and 0 off.
        #expect(try RestoreWrites.from(env: ["WALE_RESTORE_DIRECT": "yes"]) == .on)
        #expect(try RestoreWrites.from(env: ["WALE_RESTORE_DIRECT": "1"]) == .on)
        #expect(try RestoreWrites.from(env: ["WALE_RESTORE_DIRECT": "0"]) == .off)
        for bad in ["auto", "sometimes", "2"] {
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
