import CWALESupport
import Crypto
import Foundation
import WALECore

/// wal-e's native encryption: a stage after compression (where gpg sits), recognised on reading
/// by its first bytes, so clear, gpg and native objects share one archive.
///
///     header:  "WALEENC" 0x01 (magic and format version) | chunk size log2 (u8) | flags (u8)
///              | recipient count (u8) | per recipient: key id (8) | ephemeral X25519 public key (32)
///              | data key wrapped (32 + 16 tag)
///     body:    chunks of AES-256-GCM: up to 2^log2 bytes of ciphertext + 16-byte tag each
///     trailer: the object's raw content digest + its length (u64 BE), in clear: flag 2, XXH3-128
///              (16 bytes, what wal-push writes); flag 1, SHA-256 (32 bytes, written before 1.3)
///
/// Each object has its own random 256-bit data key, wrapped for every recipient: the shared secret
/// of a fresh ephemeral X25519 key with the recipient's public key, through HKDF-SHA256 (salt:
/// ephemeral ‖ recipient public key), seals the data key with AES-256-GCM. Only a private key can
/// unwrap it: the database host, holding public keys, cannot read its own archive.
/// Chunk `i`'s nonce is `i` (big-endian, 11 bytes) followed by 1 for the final chunk, 0 otherwise
/// (the STREAM construction): reordered, dropped, truncated or spliced chunks fail their tag. Each
/// chunk also authenticates the fixed header fields. The recipients are not authenticated by the
/// chunks on purpose: rewrapping to a new key replaces them without touching the body; a changed
/// stanza unwraps to no key or a wrong one, and the first chunk then fails.
/// The trailer (wal-push only) lets a re-push be compared with the archived segment without the
/// private key; the final chunk authenticates it (it is part of that chunk's associated data).
public enum NativeEncryption {
    public static let magic: [UInt8] = Array("WALEENC".utf8) + [1]
    static let chunkLog2: UInt8 = 16
    static var chunkSize: Int { 1 << Int(chunkLog2) }
    static let tagSize = 16
    public static let stanzaSize = 8 + 32 + 48
    static let flagSHA256Trailer: UInt8 = 1
    static let flagXXH3Trailer: UInt8 = 2

    /// The trailer's digest algorithm and length for a header's flags (nil, 0: no trailer).
    static func trailer(flags: UInt8) -> (ContentDigestAlgorithm, Int)? {
        if flags & flagXXH3Trailer != 0 { return (.xxh3, 16 + 8) }
        if flags & flagSHA256Trailer != 0 { return (.sha256, 32 + 8) }
        return nil
    }

    static func flag(for algorithm: ContentDigestAlgorithm) -> UInt8 {
        switch algorithm {
        case .sha256: flagSHA256Trailer
        case .xxh3: flagXXH3Trailer
        }
    }
    static let wrapInfo = Array("wal-e native encryption v1 key wrap".utf8)

    static func nonceBytes(_ index: UInt64, final: Bool) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 12)
        for i in 0..<8 { b[3 + i] = UInt8(truncatingIfNeeded: index >> (56 - 8 * UInt64(i))) }
        b[11] = final ? 1 : 0
        return b
    }

    static func nonce(_ index: UInt64, final: Bool) -> AES.GCM.Nonce { try! AES.GCM.Nonce(data: nonceBytes(index, final: final)) }

    static func wrapKey(shared: SharedSecret, ephemeral: [UInt8], recipient: [UInt8]) -> SymmetricKey {
        shared.hkdfDerivedSymmetricKey(using: SHA256.self, salt: ephemeral + recipient, sharedInfo: wrapInfo, outputByteCount: 32)
    }

    /// The data key wrapped for one recipient: id, ephemeral public key, sealed key.
    static func stanza(dataKey: SymmetricKey, to r: EncryptionPublicKey) throws -> [UInt8] {
        let eph = Curve25519.KeyAgreement.PrivateKey()
        let ephPub = Array(eph.publicKey.rawRepresentation)
        let kek = wrapKey(shared: try eph.sharedSecretFromKeyAgreement(with: r.key), ephemeral: ephPub, recipient: r.raw)
        let sealed = try AES.GCM.seal(dataKey.withUnsafeBytes { Array($0) }, using: kek, nonce: nonce(0, final: true), authenticating: r.id)
        return r.id + ephPub + Array(sealed.ciphertext) + Array(sealed.tag)
    }

    /// The data key from a stanza for `key` (nil if it was not wrapped for it or does not unwrap).
    static func unwrap(_ s: ArraySlice<UInt8>, with key: EncryptionPrivateKey) -> SymmetricKey? {
        let s = Array(s)
        guard Array(s[0..<8]) == key.id, let eph = try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: s[8..<40]),
            let shared = try? key.key.sharedSecretFromKeyAgreement(with: eph)
        else { return nil }
        let kek = wrapKey(shared: shared, ephemeral: Array(s[8..<40]), recipient: key.publicKey.raw)
        guard let box = try? AES.GCM.SealedBox(nonce: nonce(0, final: true), ciphertext: s[40..<72], tag: s[72..<88]),
            let raw = try? AES.GCM.open(box, using: kek, authenticating: key.id)
        else { return nil }
        return SymmetricKey(data: raw)
    }

    /// The key ids an object is encrypted to, from its header (nil: not a native object).
    public static func recipients(ofHeader head: [UInt8]) -> [String]? {
        guard head.starts(with: magic), head.count >= 11 else { return nil }
        let n = Int(head[10])
        guard head.count >= 11 + n * stanzaSize else { return nil }
        return (0..<n).map { i in hexString(head[(11 + i * stanzaSize)..<(19 + i * stanzaSize)]) }
    }

    /// How many bytes of a native object's start hold its header (nil: not a native object; 0: the
    /// bytes given do not reach its end yet).
    public static func headerLength(_ head: [UInt8]) -> Int? {
        guard head.count >= magic.count else { return head == Array(magic.prefix(head.count)) ? 0 : nil }
        guard head.starts(with: magic) else { return nil }
        guard head.count >= 11 else { return 0 }
        let n = 11 + Int(head[10]) * stanzaSize
        return head.count >= n ? n : 0
    }

    /// What rewrapping one object's header comes to.
    public enum Rewrap: Equatable, Sendable {
        /// Not a native object (clear, gpg): left alone.
        case notNative
        /// Not wrapped for the key being retired: left alone (its recipients).
        case notForKey([String])
        /// The new header: the retired key's stanza replaced by stanzas for the new keys (kept
        /// stanzas for other recipients first, in their order); `oldLength` bytes of the old header go.
        case rewrapped(header: [UInt8], oldLength: Int, before: [String], after: [String])
    }

    /// Rewraps a native header (the object's first bytes, at least its whole header) from the private
    /// key `from` to the public keys `to`: the data key is unwrapped with `from` and wrapped anew for
    /// each of `to` not already a recipient; `from`'s stanza is dropped unless `from` is among `to`.
    /// The body is untouched: the chunks authenticate only the fixed fields (magic, chunk size,
    /// flags), which stay. A stanza for `from` that does not unwrap is corruption, not skipped.
    public static func rewrap(head: [UInt8], from: EncryptionPrivateKey, to: [EncryptionPublicKey]) throws -> Rewrap {
        guard let length = headerLength(head) else { return .notNative }
        guard length > 0 else { throw WALEError(.corrupt, "a native object ends inside its header") }
        let n = Int(head[10])
        let stanzas = (0..<n).map { head[(11 + $0 * stanzaSize)..<(11 + ($0 + 1) * stanzaSize)] }
        let ids = stanzas.map { hexString($0.prefix(8)) }
        guard let mine = stanzas.firstIndex(where: { Array($0.prefix(8)) == from.id }) else { return .notForKey(ids) }
        guard let dataKey = unwrap(stanzas[mine], with: from) else {
            throw WALEError(.corrupt, "the data key wrapped for key id \(from.publicKey.idText) does not unwrap with its private key")
        }
        let keep = stanzas.enumerated().filter { $0.offset != mine || to.contains(from.publicKey) }.map { Array($0.element) }
        let keptIDs = keep.map { Array($0.prefix(8)) }
        let added = try to.filter { !keptIDs.contains($0.id) }.map { try stanza(dataKey: dataKey, to: $0) }
        let all = keep + added
        guard all.count < 256 else { throw WALEError(.user, "an object can have at most 255 recipients") }
        let header = Array(head[0..<10]) + [UInt8(all.count)] + all.flatMap { $0 }
        return .rewrapped(header: header, oldLength: length, before: ids, after: all.map { hexString($0.prefix(8)) })
    }

    /// The raw content's digest and length from a native object's trailer, read without any key
    /// (nil when the object has no trailer).
    public static func contentDigest(head: [UInt8], tail: [UInt8]) -> ContentDigest? {
        guard head.starts(with: magic), head.count > 9, let (algorithm, size) = trailer(flags: head[9]), tail.count >= size else { return nil }
        let t = Array(tail.suffix(size))
        let n = t[(size - 8)...].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return ContentDigest(algorithm, hex: hexString(t[..<(size - 8)]), length: Int64(n))
    }
}

/// The digest a native object's trailer carries: its algorithm (in the header, written first) and
/// the value, asked for once the content has been read.
public struct TrailerDigest {
    public let algorithm: ContentDigestAlgorithm
    public let value: () -> ContentDigest
    public init(_ algorithm: ContentDigestAlgorithm, _ value: @escaping () -> ContentDigest) {
        self.algorithm = algorithm
        self.value = value
    }
}

/// Encrypts a stream to the recipients (see `NativeEncryption`).
public final class NativeEncryptor: ByteTransform {
    private let key = SymmetricKey(size: .bits256)
    private let cipher: ChunkCipher
    private var header: [UInt8]
    private var aad: [UInt8]
    private var input = InputBuffer()
    private var output = OutputBuffer()
    private var index: UInt64 = 0
    private var finished = false
    /// The raw content's digest and length, asked for at the end (wal-push's trailer).
    private let contentDigest: TrailerDigest?

    /// `contentDigest`: the raw content's digest, asked for at the end, for the trailer.
    public init(recipients: [EncryptionPublicKey], contentDigest: TrailerDigest? = nil) throws {
        guard !recipients.isEmpty, recipients.count < 256 else { throw WALEError(.user, "native encryption needs 1 to 255 public keys") }
        self.contentDigest = contentDigest
        cipher = ChunkCipher(key)
        aad = NativeEncryption.magic + [NativeEncryption.chunkLog2, contentDigest.map { NativeEncryption.flag(for: $0.algorithm) } ?? 0]
        header = aad + [UInt8(recipients.count)]
        for r in recipients { header += try NativeEncryption.stanza(dataKey: key, to: r) }
        output.append(header)
    }

    public func push(_ bytes: [UInt8]) throws {
        // A full chunk is sealed as not final only once a byte after it has arrived. Chunks are
        // sealed straight from the pushed array into one new array for this push; only the rest
        // (one chunk at most) is kept.
        let size = NativeEncryption.chunkSize
        let framed = size + NativeEncryption.tagSize
        let chunks = max(0, (input.count + bytes.count - 1) / size)
        guard chunks > 0 else { return input.append(bytes) }
        var rest = bytes[...]
        let sealed = try [UInt8](unsafeUninitializedCapacity: chunks * framed) { out, written in
            func one(_ plain: UnsafeRawBufferPointer) throws {
                try seal(plain, final: false, into: UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: out[written..<(written + framed)])))
                written += framed
            }
            if input.count > 0 {
                let need = size - input.count
                input.append(Array(rest.prefix(need)))
                rest = rest.dropFirst(need)
                try input.withUnconsumed { try one(UnsafeRawBufferPointer(rebasing: $0.prefix(size))) }
                input.consume(size)
            }
            while rest.count > size {
                try rest.prefix(size).withUnsafeBytes { try one($0) }
                rest = rest.dropFirst(size)
            }
        }
        input.append(Array(rest))
        output.append(sealed)
    }

    /// Seals one chunk into `out` (its length plus the tag).
    private func seal(_ plain: UnsafeRawBufferPointer, final: Bool, trailer: [UInt8] = [], into out: UnsafeMutableRawBufferPointer) throws {
        guard cipher.seal(plain, nonce: NativeEncryption.nonceBytes(index, final: final), aad: trailer.isEmpty ? aad : aad + trailer, into: out)
        else { throw WALEError(.internal, "AES-256-GCM failed to seal a chunk") }
        index += 1
    }

    public func finish() throws {
        guard !finished else { return }
        finished = true
        var trailer: [UInt8] = []
        if let contentDigest {
            let d = contentDigest.value()
            precondition(d.algorithm == contentDigest.algorithm, "the trailer's digest is not the one its header announced")
            let n = UInt64(d.length)
            trailer = (EncryptionKeys.hexBytes(d.hex) ?? []) + (0..<8).map { UInt8(truncatingIfNeeded: n >> (56 - 8 * UInt64($0))) }
        }
        let last = try [UInt8](unsafeUninitializedCapacity: input.count + NativeEncryption.tagSize) { out, written in
            try input.withUnconsumed { try seal($0, final: true, trailer: trailer, into: UnsafeMutableRawBufferPointer(out)) }
            written = out.count
        }
        input.consume(input.count)
        output.append(last)
        output.append(trailer)
    }

    public func pull(limit: Int) throws -> [UInt8] { output.take(limit: limit) }
}

/// Decrypts a native object with whichever of the private keys it was wrapped for.
public final class NativeDecryptor: ByteTransform {
    private let name: String
    private let keys: () throws -> [EncryptionPrivateKey]
    private var input = InputBuffer()
    private var output = OutputBuffer()
    private var cipher: ChunkCipher?
    private var aad: [UInt8] = []
    /// The trailer's length (0: none).
    private var trailer = 0
    private var index: UInt64 = 0

    public init(name: String, keys: @escaping () throws -> [EncryptionPrivateKey] = EncryptionKeys.privateKeysFromEnvironment) {
        self.name = name
        self.keys = keys
    }

    func corrupt(_ why: String) -> WALEError {
        WALEError(.corrupt, "\(name) fails its encryption check: \(why)", hint: "the object is damaged or was tampered with")
    }

    private func readHeader() throws -> Bool {
        guard input.count >= 11 else { return false }
        let fixed = Array(input.slice(0, 11))
        guard fixed.starts(with: NativeEncryption.magic) else { throw corrupt("unknown format version") }
        guard fixed[8] >= 10 && fixed[8] <= 24 else { throw corrupt("bad chunk size") }
        let n = Int(fixed[10])
        guard input.count >= 11 + n * NativeEncryption.stanzaSize else { return false }
        let stanzas = Array(input.slice(11, n * NativeEncryption.stanzaSize))
        let mine = try keys()
        let ids = (0..<n).map { hexString(stanzas[($0 * NativeEncryption.stanzaSize)..<($0 * NativeEncryption.stanzaSize + 8)]) }
        guard !mine.isEmpty else {
            throw WALEError(
                .user, "\(name) is encrypted (wal-e native encryption, key ids \(ids.joined(separator: ", "))) and no private key is given",
                hint: "set \(EncryptionKeys.privateKeysVariable) to the private key file (only where the archive is read: restores)")
        }
        for i in 0..<n {
            let s = stanzas[(i * NativeEncryption.stanzaSize)..<((i + 1) * NativeEncryption.stanzaSize)]
            if let k = mine.lazy.compactMap({ NativeEncryption.unwrap(s, with: $0) }).first {
                cipher = ChunkCipher(k)
                break
            }
        }
        guard cipher != nil else {
            throw WALEError(
                .user, "\(name) is encrypted to key ids \(ids.joined(separator: ", ")); none of \(EncryptionKeys.privateKeysVariable) unwraps it",
                detail: "given: " + mine.map(\.publicKey.idText).joined(separator: ", "),
                hint: "add the private key of one of those ids to \(EncryptionKeys.privateKeysVariable)")
        }
        chunk = 1 << Int(fixed[8])
        trailer = NativeEncryption.trailer(flags: fixed[9])?.1 ?? 0
        aad = Array(fixed[0..<10])
        input.consume(11 + n * NativeEncryption.stanzaSize)
        return true
    }

    private var chunk = 0

    /// Opens one chunk (`framed`: ciphertext and tag) into `out`; how many bytes it wrote.
    private func open(_ framed: UnsafeRawBufferPointer, final: Bool, trailer: [UInt8] = [], into out: UnsafeMutableRawBufferPointer) throws -> Int {
        guard framed.count >= NativeEncryption.tagSize else { throw corrupt("truncated") }
        guard
            let n = cipher!.open(
                framed, nonce: NativeEncryption.nonceBytes(index, final: final), aad: trailer.isEmpty ? aad : aad + trailer, into: out)
        else {
            throw corrupt(final ? "the last chunk (\(index)) does not authenticate: truncated, reordered or altered" : "chunk \(index) does not authenticate")
        }
        index += 1
        return n
    }

    /// Opens the first `n` bytes of the input buffer as a chunk, onto the output.
    private func openBuffered(_ n: Int, final: Bool, trailer: [UInt8] = []) throws {
        guard n >= NativeEncryption.tagSize else { throw corrupt("truncated") }
        let plain = try [UInt8](unsafeUninitializedCapacity: n - NativeEncryption.tagSize) { out, written in
            written = try input.withUnconsumed {
                try open(UnsafeRawBufferPointer(rebasing: $0.prefix(n)), final: final, trailer: trailer, into: UnsafeMutableRawBufferPointer(out))
            }
        }
        input.consume(n)
        output.append(plain)
    }

    /// What may be the final chunk and the trailer: kept until the end of the stream.
    private var reserve: Int { chunk + NativeEncryption.tagSize + trailer }

    public func push(_ bytes: [UInt8]) throws {
        var rest = bytes[...]
        if cipher == nil {
            input.append(bytes)
            guard try readHeader() else { return }
            rest = []
        }
        // Every chunk past the reserve is opened now, straight from the pushed array (only a chunk
        // that straddles two pushes, and the reserve, are kept in the buffer), into one new array.
        let framed = chunk + NativeEncryption.tagSize
        let available = input.count + rest.count
        let chunks = available > reserve ? (available - reserve + framed - 1) / framed : 0
        guard chunks > 0 else { return input.append(Array(rest)) }
        let plain = try [UInt8](unsafeUninitializedCapacity: chunks * chunk) { out, written in
            func one(_ bytes: UnsafeRawBufferPointer) throws {
                written += try open(bytes, final: false, into: UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: out[written..<(written + chunk)])))
            }
            for _ in 0..<chunks {
                if input.count > 0 {
                    if input.count < framed {
                        let n = framed - input.count
                        input.append(Array(rest.prefix(n)))
                        rest = rest.dropFirst(n)
                    }
                    try input.withUnconsumed { try one(UnsafeRawBufferPointer(rebasing: $0.prefix(framed))) }
                    input.consume(framed)
                } else {
                    try rest.prefix(framed).withUnsafeBytes { try one($0) }
                    rest = rest.dropFirst(framed)
                }
            }
        }
        input.append(Array(rest))
        output.append(plain)
    }

    public func finish() throws {
        if cipher == nil, try !readHeader() { throw corrupt("truncated in its header") }
        while input.count > reserve { try openBuffered(chunk + NativeEncryption.tagSize, final: false) }
        let rest = input.count - trailer
        guard rest >= NativeEncryption.tagSize else { throw corrupt("truncated") }
        let t = trailer > 0 ? Array(input.slice(rest, trailer)) : []
        try openBuffered(rest, final: true, trailer: t)
        input.consume(t.count)
    }

    public func pull(limit: Int) throws -> [UInt8] { output.take(limit: limit) }
}

/// AES-256-GCM over buffers the caller owns (`wale_aead.c`): swift-crypto's `AES.GCM` returns every
/// chunk in fresh allocations, which cost more than the cipher (docs/design.md).
final class ChunkCipher {
    private let context: UnsafeMutableRawPointer

    init(_ key: SymmetricKey) {
        precondition(key.bitCount == 256)
        context = key.withUnsafeBytes { wale_gcm_new($0.bindMemory(to: UInt8.self).baseAddress)! }
    }

    deinit { wale_gcm_free(context) }

    /// Seals `plain` into `out` (exactly `plain.count` + 16 bytes: ciphertext, then tag).
    func seal(_ plain: UnsafeRawBufferPointer, nonce: [UInt8], aad: [UInt8], into out: UnsafeMutableRawBufferPointer) -> Bool {
        precondition(out.count == plain.count + NativeEncryption.tagSize && nonce.count == 12)
        let n = aad.withUnsafeBufferPointer { a in
            wale_gcm_seal(
                context, out.bindMemory(to: UInt8.self).baseAddress, out.count, nonce, plain.bindMemory(to: UInt8.self).baseAddress,
                plain.count, a.baseAddress, a.count)
        }
        return n == out.count
    }

    /// Opens `framed` (ciphertext and tag) into `out` (at least its length less the tag): the bytes
    /// written, nil when the tag does not authenticate.
    func open(_ framed: UnsafeRawBufferPointer, nonce: [UInt8], aad: [UInt8], into out: UnsafeMutableRawBufferPointer) -> Int? {
        precondition(framed.count >= NativeEncryption.tagSize && out.count >= framed.count - NativeEncryption.tagSize && nonce.count == 12)
        let n = aad.withUnsafeBufferPointer { a in
            wale_gcm_open(
                context, out.bindMemory(to: UInt8.self).baseAddress, out.count, nonce, framed.bindMemory(to: UInt8.self).baseAddress,
                framed.count, a.baseAddress, a.count)
        }
        return n < 0 ? nil : n
    }
}
