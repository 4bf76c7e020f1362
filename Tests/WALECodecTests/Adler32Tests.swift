import CLZO
import CWALESupport
import Testing

/// The SIMD Adler-32 must give exactly liblzo2's (and zlib's) value for every length, alignment
/// and content: lzop readers (WAL-E's `lzop -d`) check it on every block.
@Suite struct Adler32Tests {
    func lzo(_ seed: UInt32, _ b: UnsafeRawBufferPointer) -> UInt32 {
        UInt32(lzo_adler32(UInt32(seed), b.baseAddress?.assumingMemoryBound(to: UInt8.self), lzo_uint(b.count)))
    }

    @Test func knownValue() {
        // RFC 1950's worked example value for "Wikipedia".
        let v = Array("Wikipedia".utf8).withUnsafeBytes { wale_adler32(1, $0.baseAddress, $0.count) }
        #expect(v == 0x11E6_0398)
    }

    @Test func matchesLiblzo2ForEveryShape() {
        var g = SystemRandomNumberGenerator()
        let data = (0..<(300 * 1024)).map { _ in UInt8.random(in: 0...255, using: &g) }
        let ones = [UInt8](repeating: 0xFF, count: 300 * 1024)  // worst case for lane overflow
        for buf in [data, ones] {
            buf.withUnsafeBytes { all in
                let lengths = [0, 1, 31, 32, 33, 63, 64, 65, 5535, 5536, 5552, 5553, 11_104, 65_536, 262_144, 262_145, all.count - 3]
                for offset in [0, 1, 3] {
                    for n in lengths {
                        let b = UnsafeRawBufferPointer(rebasing: all[offset..<(offset + n)])
                        for seed: UInt32 in [1, 0xFFF0_FFF0, 0x1234_5678 % 65521] {
                            let want = lzo(seed, b)
                            #expect(wale_adler32(seed, b.baseAddress, b.count) == want, "n=\(n) offset=\(offset) seed=\(seed)")
                            #expect(wale_adler32_portable(seed, b.baseAddress, b.count) == want)
                        }
                    }
                }
            }
        }
    }
}
