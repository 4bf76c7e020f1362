import Testing
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
        #expect(WALPush.contentDigestAlgorithm == .xxh3)
    }
}
