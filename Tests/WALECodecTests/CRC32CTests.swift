import CWALESupport
import Testing

/// S3 checks x-amz-checksum-crc32c against the body it received: the value must be exactly
/// CRC-32C for every length, alignment and content, and chain across pieces.
@Suite struct CRC32CTests {
    @Test func knownValues() {
        // The CRC catalogue's check value for CRC-32/ISCSI, and RFC 3720's 32 zero bytes.
        #expect(Array("123456789".utf8).withUnsafeBytes { wale_crc32c(0, $0.baseAddress, $0.count) } == 0xE306_9283)
        #expect([UInt8](repeating: 0, count: 32).withUnsafeBytes { wale_crc32c(0, $0.baseAddress, $0.count) } == 0x8A91_36AA)
        #expect([UInt8](repeating: 0xFF, count: 32).withUnsafeBytes { wale_crc32c(0, $0.baseAddress, $0.count) } == 0x62A8_AB43)
        #expect(wale_crc32c(0, nil, 0) == 0)
    }

    @Test func hardwareMatchesPortableForEveryShape() {
        var g = SystemRandomNumberGenerator()
        let data = (0..<(200 * 1024)).map { _ in UInt8.random(in: 0...255, using: &g) }
        data.withUnsafeBytes { all in
            for offset in [0, 1, 3, 7] {
                // Around the three-chain blocks: 3 × 256 and 3 × 8192 bytes, and mixes of both.
                for n in [0, 1, 7, 8, 9, 15, 16, 63, 64, 65, 767, 768, 769, 775, 1536, 4096, 24_575, 24_576, 24_577,
                          24_576 + 768 + 13, 65_537, 3 * 24_576 + 2 * 768 + 7, 200_000] {
                    let b = UnsafeRawBufferPointer(rebasing: all[offset..<(offset + n)])
                    let want = wale_crc32c_portable(0, b.baseAddress, b.count)
                    #expect(wale_crc32c(0, b.baseAddress, b.count) == want, "n=\(n) offset=\(offset)")
                    // Chaining: two pieces give the value of the whole.
                    let cut = n / 3
                    let first = wale_crc32c(0, b.baseAddress, cut)
                    #expect(wale_crc32c(first, b.baseAddress.map { $0 + cut }, n - cut) == want)
                }
            }
        }
    }
}
