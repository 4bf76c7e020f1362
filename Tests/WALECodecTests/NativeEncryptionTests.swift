import Crypto
import Foundation
import Testing
import WALECore
@testable import WALECodec

@Suite struct NativeEncryptionTests {
    let alice = EncryptionPrivateKey.generate()
    let escrow = EncryptionPrivateKey.generate()
    let mallory = EncryptionPrivateKey.generate()
    var chunk: Int { NativeEncryption.chunkSize }

    func encrypt(_ plain: [UInt8], to keys: [EncryptionPublicKey], digest: ContentDigest? = nil) async throws -> [UInt8] {
        try await run(try NativeEncryptor(recipients: keys, contentDigest: digest.map { d in TrailerDigest(d.algorithm) { d } }), plain, feed: 10_000)
    }

    func decrypt(_ sealed: [UInt8], with keys: [EncryptionPrivateKey]) async throws -> [UInt8] {
        try await run(NativeDecryptor(name: "obj", keys: { keys }), sealed, feed: 7_777)
    }

    @Test func roundTripsEmptyOneAndManyChunks() async throws {
        for n in [0, 1, chunk - 1, chunk, chunk + 1, 5 * chunk, 5 * chunk + 123] {
            let plain = random(n)
            let sealed = try await encrypt(plain, to: [alice.publicKey, escrow.publicKey])
            #expect(Compression.sniff(sealed) == .native)
            #expect(try await decrypt(sealed, with: [alice]) == plain, "\(n)")
            #expect(try await run(NativeDecryptor(name: "obj", keys: { [self.alice] }), sealed, feed: 1 << 20) == plain, "\(n) whole")
            #expect(try await run(NativeDecryptor(name: "obj", keys: { [self.alice] }), sealed, feed: chunk + 16) == plain, "\(n) framed")
            #expect(try await decrypt(sealed, with: [mallory, escrow]) == plain, "\(n) escrow")  // any listed key
            #expect(NativeEncryption.recipients(ofHeader: sealed) == [alice.publicKey.idText, escrow.publicKey.idText])
        }
    }

    /// The pushes the encryptor is given: any split gives the same stream once decrypted.
    @Test func encryptionIsTheSameWhateverThePushSizes() async throws {
        let plain = random(7 * chunk + 99)
        for feed in [1, chunk - 1, chunk, chunk + 1, 3 * chunk, 1 << 20] {
            let sealed = try await run(try NativeEncryptor(recipients: [alice.publicKey]), plain, feed: feed)
            #expect(sealed.count == 11 + NativeEncryption.stanzaSize + plain.count + 8 * NativeEncryption.tagSize, "\(feed)")
            #expect(try await decrypt(sealed, with: [alice]) == plain, "\(feed)")
        }
    }

    /// The chunk cipher (BoringSSL's EVP_AEAD into our buffers) is AES-256-GCM: the GCM
    /// specification's test cases 13 and 14, and the same bytes as swift-crypto's AES.GCM.
    @Test func chunkCipherIsAES256GCM() throws {
        func hex(_ s: String) -> [UInt8] { EncryptionKeys.hexBytes(s)! }
        let zeroKey = ChunkCipher(SymmetricKey(data: [UInt8](repeating: 0, count: 32)))
        let zeroNonce = [UInt8](repeating: 0, count: 12)
        for (plain, expected) in [([UInt8](), "530f8afbc74536b9a963b4f1c4cb738b"),
                                  ([UInt8](repeating: 0, count: 16), "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919")] {
            var out = [UInt8](repeating: 0, count: plain.count + 16)
            #expect(plain.withUnsafeBytes { p in out.withUnsafeMutableBytes { zeroKey.seal(p, nonce: zeroNonce, aad: [], into: $0) } })
            #expect(out == hex(expected))
        }
        let key = SymmetricKey(size: .bits256)
        let cipher = ChunkCipher(key)
        let plain = random(chunk + 7)
        let aad = Array("header".utf8)
        let nonce = NativeEncryption.nonceBytes(41, final: true)
        var ours = [UInt8](repeating: 0, count: plain.count + 16)
        #expect(plain.withUnsafeBytes { p in ours.withUnsafeMutableBytes { cipher.seal(p, nonce: nonce, aad: aad, into: $0) } })
        let theirs = try AES.GCM.seal(plain, using: key, nonce: AES.GCM.Nonce(data: nonce), authenticating: aad)
        #expect(ours == Array(theirs.ciphertext) + Array(theirs.tag))
        var opened = [UInt8](repeating: 0, count: plain.count)
        #expect(ours.withUnsafeBytes { f in opened.withUnsafeMutableBytes { cipher.open(f, nonce: nonce, aad: aad, into: $0) } } == plain.count)
        #expect(opened == plain)
        // Another nonce, other associated data or a flipped bit: refused.
        #expect(ours.withUnsafeBytes { f in opened.withUnsafeMutableBytes { cipher.open(f, nonce: zeroNonce, aad: aad, into: $0) } } == nil)
        #expect(ours.withUnsafeBytes { f in opened.withUnsafeMutableBytes { cipher.open(f, nonce: nonce, aad: [], into: $0) } } == nil)
        ours[chunk / 2] ^= 0x80
        #expect(ours.withUnsafeBytes { f in opened.withUnsafeMutableBytes { cipher.open(f, nonce: nonce, aad: aad, into: $0) } } == nil)
    }

    func expectCorrupt(_ sealed: [UInt8], _ what: String) async {
        await #expect(throws: WALEError.self, "\(what)") {
            do { _ = try await decrypt(sealed, with: [alice]) } catch let e as WALEError {
                #expect(e.kind == .corrupt, "\(what): \(e.message)")
                throw e
            }
        }
    }

    @Test func everyTamperingIsDetected() async throws {
        let plain = random(3 * chunk + 500)
        let sealed = try await encrypt(plain, to: [alice.publicKey])
        let header = 11 + NativeEncryption.stanzaSize
        let framed = chunk + NativeEncryption.tagSize
        // A flipped bit in each chunk (first byte, middle, tag) and in the fixed header fields.
        for at in [header, header + framed / 2, header + framed - 1, header + framed + 3, header + 3 * framed + 10, sealed.count - 1, 8, 9] {
            var t = sealed
            t[at] ^= 0x01
            await expectCorrupt(t, "bit flipped at \(at)")
        }
        // The final chunk dropped (the stream then ends on a chunk sealed as not final), or cut.
        await expectCorrupt(Array(sealed.prefix(header + 3 * framed)), "final chunk dropped")
        await expectCorrupt(Array(sealed.prefix(sealed.count - 5)), "truncated")
        await expectCorrupt(Array(sealed.prefix(header + 2)), "truncated in the body")
        // Two chunks swapped.
        var swapped = Array(sealed.prefix(header))
        let second = Array(sealed[(header + framed)..<(header + 2 * framed)])
        let first = Array(sealed[header..<(header + framed)])
        swapped += second
        swapped += first
        swapped += Array(sealed[(header + 2 * framed)...])
        await expectCorrupt(swapped, "chunks reordered")
        // A chunk spliced in from another object encrypted to the same key.
        let other = try await encrypt(random(3 * chunk + 500), to: [alice.publicKey])
        var spliced = sealed
        spliced.replaceSubrange((header + framed)..<(header + 2 * framed), with: other[(header + framed)..<(header + 2 * framed)])
        await expectCorrupt(spliced, "chunk from another object")
        // Another object's header (another data key) over this body.
        var reheaded = sealed
        reheaded.replaceSubrange(0..<header, with: other[0..<header])
        await expectCorrupt(reheaded, "another object's header")
    }

    @Test func aHeaderForAnotherKeyIsAClearUserError() async throws {
        let sealed = try await encrypt(random(1000), to: [mallory.publicKey])
        await #expect(throws: WALEError.self) {
            do { _ = try await decrypt(sealed, with: [alice]) } catch let e as WALEError {
                #expect(e.kind == .user && e.message.contains(mallory.publicKey.idText))
                throw e
            }
        }
        await #expect(throws: WALEError.self) {
            do { _ = try await decrypt(sealed, with: []) } catch let e as WALEError {
                #expect(e.kind == .user && e.hint?.contains("WALE_ENCRYPTION_PRIVATE_KEYS") == true)
                throw e
            }
        }
    }

    @Test func rewrapReplacesOnlyTheRetiredKeysStanzaAndKeepsTheBody() async throws {
        let bob = EncryptionPrivateKey.generate()
        let plain = random(3 * chunk + 7)
        let digest = ContentDigest(.xxh3, hex: String(repeating: "cd", count: 16), length: Int64(plain.count))
        let sealed = try await encrypt(plain, to: [alice.publicKey, escrow.publicKey], digest: digest)
        let oldHeader = 11 + 2 * NativeEncryption.stanzaSize
        guard case .rewrapped(let header, let oldLength, let before, let after) = try NativeEncryption.rewrap(head: sealed, from: alice, to: [bob.publicKey])
        else { Issue.record("not rewrapped"); return }
        #expect(oldLength == oldHeader)
        #expect(before == [alice.publicKey.idText, escrow.publicKey.idText])
        #expect(after == [escrow.publicKey.idText, bob.publicKey.idText])  // the escrow key stays
        let rewrapped = header + sealed[oldLength...]
        #expect(try await decrypt(rewrapped, with: [bob]) == plain)
        #expect(try await decrypt(rewrapped, with: [escrow]) == plain)
        await #expect(throws: WALEError.self) { _ = try await decrypt(rewrapped, with: [alice]) }  // retired
        // The trailer (wal-push's re-push check) is untouched.
        #expect(NativeEncryption.contentDigest(head: rewrapped, tail: Array(rewrapped.suffix(64))) == digest)
        // Objects not wrapped for the retired key, and objects that are not native, are left alone.
        #expect(try NativeEncryption.rewrap(head: rewrapped, from: alice, to: [bob.publicKey]) == .notForKey([escrow.publicKey.idText, bob.publicKey.idText]))
        #expect(try NativeEncryption.rewrap(head: Array("\u{89}LZO\0\r\n".utf8) + [0, 0, 0], from: alice, to: [bob.publicKey]) == .notNative)
        // Rewrapping to a key already present only drops the retired one.
        guard case .rewrapped(let h2, _, _, let after2) = try NativeEncryption.rewrap(head: rewrapped, from: bob, to: [escrow.publicKey])
        else { Issue.record("not rewrapped"); return }
        #expect(after2 == [escrow.publicKey.idText])
        #expect(try await decrypt(h2 + rewrapped[header.count...], with: [escrow]) == plain)
        // A retired key's stanza that does not unwrap is damage, reported, not skipped.
        var damaged = sealed
        damaged[11 + 60] ^= 1
        #expect(throws: WALEError.self) { try NativeEncryption.rewrap(head: damaged, from: alice, to: [bob.publicKey]) }
        #expect(NativeEncryption.headerLength(Array(sealed.prefix(11))) == 0)
        #expect(NativeEncryption.headerLength(Array(sealed.prefix(oldHeader))) == oldHeader)
    }

    /// The pipelines run native encryption on its own thread (Sealing, AutoDecoder): the same bytes
    /// as the stage run inline, and its errors still reach the caller.
    @Test func backgroundStageGivesTheSameBytesAndItsErrors() async throws {
        let plain = random(7 * chunk + 99)
        let sealed = try await run(Sealing.native([alice.publicKey]).seal(LzopEncoder()), plain, feed: 100_000)
        #expect(Compression.sniff(sealed) == .native)
        let inline = try await run(LzopDecoder(), try await decrypt(sealed, with: [alice]), feed: 1 << 20)
        #expect(inline == plain)
        let background = try await run(BackgroundTransform(NativeDecryptor(name: "obj", keys: { [self.alice] })), sealed, feed: 33_333)
        #expect(try await run(LzopDecoder(), background, feed: 1 << 20) == plain)
        var damaged = sealed
        damaged[sealed.count / 2] ^= 4
        await #expect(throws: WALEError.self) {
            _ = try await run(BackgroundTransform(NativeDecryptor(name: "obj", keys: { [self.alice] })), damaged, feed: 33_333)
        }
        await #expect(throws: WALEError.self) {
            _ = try await run(BackgroundTransform(NativeDecryptor(name: "obj", keys: { [self.alice] })), Array(sealed.prefix(sealed.count - 3)))
        }
    }

    /// XXH3-128 (what wal-push writes) and SHA-256 (objects written before 1.3, still read).
    @Test(arguments: [ContentDigest(.xxh3, hex: String(repeating: "ab", count: 16), length: 16 << 20),
                      ContentDigest(.sha256, hex: String(repeating: "ab", count: 32), length: 16 << 20)])
    func trailerCarriesTheContentDigestAuthenticated(digest: ContentDigest) async throws {
        let plain = random(2 * chunk)
        let sealed = try await encrypt(plain, to: [alice.publicKey], digest: digest)
        #expect(sealed[9] == (digest.algorithm == .xxh3 ? 2 : 1))
        #expect(sealed.count == 11 + NativeEncryption.stanzaSize + 2 * (chunk + 16) + (digest.algorithm == .xxh3 ? 24 : 40))
        #expect(NativeEncryption.contentDigest(head: Array(sealed.prefix(16)), tail: Array(sealed.suffix(64))) == digest)
        #expect(try await decrypt(sealed, with: [alice]) == plain)
        var t = sealed
        t[t.count - 1] ^= 1  // the length in the trailer
        await expectCorrupt(t, "trailer altered")
        var h = sealed
        h[h.count - 20] ^= 1  // the digest in the trailer
        await expectCorrupt(h, "trailer digest altered")
        #expect(NativeEncryption.contentDigest(head: Array(sealed.prefix(16)), tail: []) == nil)
    }

    @Test func keyFilesRoundTripAndRefuseDamage() throws {
        let dir = "/tmp/wal-e-keytest-\(getpid())"
        _ = try? POSIXTest.mkdir(dir)
        let priv = dir + "/k", pub = dir + "/k.pub"
        try POSIXTest.write(priv, alice.text(), mode: 0o600)
        try POSIXTest.write(pub, alice.publicKey.text(), mode: 0o644)
        #expect(try EncryptionKeys.publicKey(path: pub) == alice.publicKey)
        #expect(try EncryptionKeys.privateKey(path: priv).publicKey == alice.publicKey)
        #expect(throws: WALEError.self) { try EncryptionKeys.publicKey(path: priv) }  // a private file is not a public one
        try POSIXTest.write(priv, alice.text(), mode: 0o644)
        #expect(throws: WALEError.self) { try EncryptionKeys.privateKey(path: priv) }  // readable by others
        try POSIXTest.write(pub, alice.publicKey.text().replacingFirst("wal-e-public-key v1 ", "wal-e-public-key v1 00"), mode: 0o644)
        #expect(throws: WALEError.self) { try EncryptionKeys.publicKey(path: pub) }
    }
}

#if canImport(Glibc)
import Glibc
#endif

enum POSIXTest {
    static func mkdir(_ p: String) throws { _ = Glibc.mkdir(p, 0o700) }
    static func write(_ p: String, _ text: String, mode: mode_t) throws {
        unlink(p)
        let fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode)
        precondition(fd >= 0)
        fchmod(fd, mode)
        _ = text.utf8CString.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count - 1) }
        close(fd)
    }
}

extension String {
    fileprivate func replacingFirst(_ a: String, _ b: String) -> String {
        guard let r = range(of: a) else { return self }
        return replacingCharacters(in: r, with: b)
    }
}
