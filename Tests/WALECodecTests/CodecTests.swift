import Testing
import WALECore
@testable import WALECodec

func run(_ t: any ByteTransform, _ input: [UInt8], feed: Int = 1 << 20) async throws -> [UInt8] {
    try await TransformedSource(BytesSource(input, chunkSize: feed), t).collect(limit: 1 << 30)
}

func compressible(_ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: ($0 / 7) % 13) } }
func random(_ n: Int) -> [UInt8] {
    var g = SystemRandomNumberGenerator()
    return (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
}

@Suite struct LzopTests {
    @Test func headerIsWhatLzopWrites() async throws {
        let out = try await run(LzopEncoder(mode: 0o100600, mtime: 1_700_000_000), [])
        #expect(out.count == 42)  // header + end-of-stream word, as `lzop -c < /dev/null`
        #expect(Array(out.prefix(9)) == Lzop.magic)
        #expect(out[15] == 1 && out[16] == 5)  // LZO1X-1, level 5
        // unix | stdout | stdin | adler32-d | adler32-c (lzop's default lacks the last: see
        // `everyFlippedBitIsCaught`)
        #expect(Array(out[17..<21]) == [0x03, 0x00, 0x00, 0x0F])
        #expect(Array(out[21..<25]) == [0x00, 0x00, 0x81, 0x80])  // the file's mode
        #expect(Array(out.suffix(4)) == [0, 0, 0, 0])
        #expect(try await run(LzopDecoder(), out).isEmpty)
    }

    @Test(arguments: [0, 1, 1000, 262_143, 262_144, 262_145, 3_000_000])
    func roundTrip(size: Int) async throws {
        for data in [compressible(size), random(size)] {
            let enc = try await run(LzopEncoder(), data)
            #expect(try await run(LzopDecoder(), enc) == data)
            if size <= 300_000 {  // byte-at-a-time parsing of every header and block boundary
                #expect(try await run(LzopDecoder(), enc, feed: 1) == data)
            }
        }
    }

    /// Blocks are cut from the stream, not from the chunks pushed: any chunking (blocks inside one
    /// chunk, blocks across two or many, chunks of one byte) gives the same bytes, and they decode.
    @Test(arguments: [1, 1000, 262_143, 262_145, 300_001, (1 << 20) + 512, 3 << 20])
    func outputDoesNotDependOnChunking(feed: Int) async throws {
        var data = compressible(1_500_000)
        data.replaceSubrange(400_000..<700_000, with: random(300_000))  // stored (raw) blocks too
        let reference = try await run(LzopEncoder(), data, feed: 1 << 20)
        let enc = try await run(LzopEncoder(), data, feed: feed)
        #expect(enc == reference)
        #expect(try await run(LzopDecoder(), enc) == data)
    }

    @Test func incompressibleBlocksAreStoredRaw() async throws {
        let data = random(300_000)
        let enc = try await run(LzopEncoder(), data)
        let expected = 300_066  // WAL-E's doc: lzop turns 300,000 random bytes into 300,066
        #expect(enc.count == expected)
        let firstBlockLengths = (enc[38..<42], enc[42..<46])
        #expect(Array(firstBlockLengths.0) == Array(firstBlockLengths.1))
    }

    @Test func everyChecksumIsVerified() async throws {
        let data = compressible(600_000)
        let enc = try await run(LzopEncoder(), data)
        var badData = enc
        badData[enc.count / 2] ^= 1
        await #expect(throws: WALEError.self) { try await run(LzopDecoder(), badData) }
        var badHeader = enc
        badHeader[25] ^= 0xFF  // mtime: covered by the header checksum
        do {
            _ = try await run(LzopDecoder(), badHeader)
            Issue.record("expected a header checksum error")
        } catch let e as WALEError {
            #expect(e.kind == .corrupt && e.message.contains("header checksum"))
        }
        var badBlockSum = enc
        badBlockSum[46] ^= 1  // first block's Adler-32 of the uncompressed data
        await #expect(throws: WALEError.self) { try await run(LzopDecoder(), badBlockSum) }
        await #expect(throws: WALEError.self) { try await run(LzopDecoder(), Array(enc.dropLast(4))) }
        await #expect(throws: WALEError.self) { try await run(LzopDecoder(), enc + [1]) }
        await #expect(throws: WALEError.self) { try await run(LzopDecoder(), Array("not lzop".utf8)) }
    }

    @Test func decoderOutputIsBoundedPerPull() async throws {
        let d = LzopDecoder()
        let enc = try await run(LzopEncoder(), [UInt8](repeating: 0, count: 8 << 20))
        try d.push(enc)  // a tiny input that expands to 8 MiB
        let first = try d.pull(limit: 1 << 20)
        #expect(first.count <= (1 << 20) + Lzop.blockSize)
    }
}

/// Pages like PostgreSQL's: a header, a hole of zeros, tuples at the end. LZO's matches into the
/// hole can point anywhere in it: a flipped bit in such an offset decodes to the same bytes, so
/// only a checksum of the compressed bytes notices it (verify once called such a partition sound).
func pageLike(_ pages: Int) -> [UInt8] {
    var out: [UInt8] = []
    for p in 0..<pages {
        var page = [UInt8](repeating: 0, count: 8192)
        for i in 0..<24 { page[i] = UInt8(truncatingIfNeeded: p * 31 + i * 7) }
        for i in 6000..<8192 { page[i] = UInt8(truncatingIfNeeded: (i / 5) % 29 + p) }
        out += page
    }
    return out
}

/// Flips one bit (0x10, as the integration test does) at every offset of `enc` past its first
/// `from` bytes and returns the offsets at which `decoder()` still produced `plain`.
func undetectedFlips(_ enc: [UInt8], plain: [UInt8], from: Int, decoder: () -> any ByteTransform) async -> [Int] {
    var missed: [Int] = []
    for at in from..<enc.count {
        var bad = enc
        bad[at] ^= 0x10
        if let out = try? await run(decoder(), bad), out == plain { missed.append(at) }
    }
    return missed
}

@Suite struct FlippedBitTests {
    @Test(arguments: [Compression.lzop, .lz4, .zstd])
    func everyFlippedBitIsCaught(codec: Compression) async throws {
        let plain = pageLike(8)
        let enc = try await run(codec.encoder(), plain)
        #expect(enc.count < plain.count / 2)
        let missed = await undetectedFlips(enc, plain: plain, from: 0) { AutoDecoder(name: "k") }
        #expect(missed.isEmpty, "flips at \(missed.prefix(10)) of \(enc.count) bytes decoded to the original")
    }
}

@Suite struct OtherCodecTests {
    @Test(arguments: [Compression.zstd, .lz4, .lzop])
    func roundTripAndSniff(codec: Compression) async throws {
        for data in [[], compressible(2_000_000), random(500_000)] {
            let enc = try await run(codec.encoder(), data)
            #expect(Compression.sniff(enc) == .compressed(codec))
            #expect(try await run(AutoDecoder(name: "k"), enc) == data)
            if data.count <= 600_000 {
                #expect(try await run(AutoDecoder(name: "k"), enc, feed: 3) == data)
            }
        }
    }

    @Test(arguments: [Compression.zstd, .lz4])
    func truncationIsDetected(codec: Compression) async throws {
        let enc = try await run(codec.encoder(), compressible(1_000_000))
        await #expect(throws: WALEError.self) { try await run(AutoDecoder(name: "k"), Array(enc.dropLast(5))) }
        var flipped = enc
        // The frame's content checksum (zstd's frame is followed by our digest frame).
        flipped[enc.count - 2 - (codec == .zstd ? ZstdDigestFrame.length : 0)] ^= 0x40
        await #expect(throws: WALEError.self) { try await run(AutoDecoder(name: "k"), flipped) }
        if codec == .zstd {
            var digest = enc
            digest[enc.count - 3] ^= 0x40  // the digest frame's digest
            await #expect(throws: WALEError.self) { try await run(AutoDecoder(name: "k"), digest) }
            // An object written before the digest frame existed still decodes.
            #expect(try await run(AutoDecoder(name: "k"), Array(enc.dropLast(ZstdDigestFrame.length))) == compressible(1_000_000))
        }
    }

    @Test func sniffsOpenPGPAndGarbage() async throws {
        #expect(Compression.sniff([0x85, 0x01, 0x0C, 0x03]) == .openPGP)
        #expect(Compression.sniff([0xC1, 0x01]) == .openPGP)
        #expect(Compression.sniff([0x00, 0x01]) == .unknown)
        // OpenPGP objects go through `gpg -d` (WALE_GPG_KEY_ID support; this test refused them
        // before gpg was supported). A broken one is never a short, successful stream: gpg says
        // nothing and outputs nothing for this stub packet, and the decrypted stream is refused.
        do {
            _ = try await run(AutoDecoder(name: "wal_005/X.lzo"), [0x85, 0x01, 0x0C, 0x03, 0, 0, 0, 0, 0, 0])
            Issue.record("expected an error")
        } catch let e as WALEError {
            #expect(e.kind == .corrupt && e.message.contains("wal_005/X.lzo (decrypted) is not in any format"), "\(e.kind) \(e.message)")
        }
        await #expect(throws: WALEError.self) { try await run(AutoDecoder(name: "k"), []) }
    }

    @Test func digest() async throws {
        let d = try await DigestingSource(BytesSource(Array("abc".utf8))).drain()
        #expect(d == ContentDigest(.sha256, hex: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", length: 3))
        // Known answers from Python's xxhash 3.6.0 (xxh3_128, canonical big-endian hex).
        let x = try await DigestingSource(BytesSource(Array("abc".utf8), chunkSize: 1), algorithm: .xxh3).drain()
        #expect(x == ContentDigest(.xxh3, hex: "06b05ab6733a618578af5f94892f3950", length: 3))
        #expect(try await DigestingSource(BytesSource([]), algorithm: .xxh3).drain().hex == "99aa06d3014798d86001c324468d497f")
        let big = (0..<1000).flatMap { _ in (0..<256).map { UInt8($0) } }
        #expect(try await DigestingSource(BytesSource(big, chunkSize: 7777), algorithm: .xxh3).drain().hex == "548512d98989de2d776474c39d20f9aa")
    }
}
