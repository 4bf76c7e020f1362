import Testing
import WALECore
@testable import WALEEngine

/// WALE_RESTORE_DIRECT: which restores write their large files around the page cache.
@Suite struct RestoreWritesTests {
    @Test func autoIsDirectFromAQuarterOfTheMemory() {
        let gib: Int64 = 1 << 30
        #expect(!RestoreWrites.auto.aroundCache(clusterBytes: 5 * gib, memoryBytes: 24 * gib))
        #expect(RestoreWrites.auto.aroundCache(clusterBytes: 6 * gib, memoryBytes: 24 * gib))
        #expect(RestoreWrites.auto.aroundCache(clusterBytes: 8 * gib, memoryBytes: 24 * gib))
        #expect(!RestoreWrites.auto.aroundCache(clusterBytes: 8 * gib, memoryBytes: 0))  // memory unknown: buffered
        #expect(RestoreWrites.on.aroundCache(clusterBytes: 0, memoryBytes: 24 * gib))
        #expect(!RestoreWrites.off.aroundCache(clusterBytes: 100 * gib, memoryBytes: 24 * gib))
        #expect(RestoreWrites.physicalMemory > 0)
    }

    @Test func theSettingIsParsedOrRefused() throws {
        #expect(try RestoreWrites.from(env: [:]) == .auto)
        #expect(try RestoreWrites.from(env: ["WALE_RESTORE_DIRECT": ""]) == .auto)
        #expect(try RestoreWrites.from(env: ["WALE_RESTORE_DIRECT": "ON"]) == .on)
        #expect(try RestoreWrites.from(env: ["WALE_RESTORE_DIRECT": "off"]) == .off)
        do {
            _ = try RestoreWrites.from(env: ["WALE_RESTORE_DIRECT": "yes"])
            Issue.record("accepted yes")
        } catch let e as WALEError {
            #expect(e.kind == .user)
            #expect(e.message.contains("WALE_RESTORE_DIRECT=yes"))
        }
    }
}
