import CXXHash
import Crypto
import Dispatch
import WALECore

/// The digest of a file's raw content that wal-push keeps with the archived object (object
/// metadata, or a native object's trailer), so that a later push of the same name is compared
/// without downloading or decrypting. XXH3-128 for new objects: the digest guards against
/// accidents (two clusters, one prefix), not against someone who can write the archive (who could
/// write any digest), and it costs 0.5 ms per 16 MiB segment where SHA-256 cost 8–9 ms of a core
/// that compression wants. SHA-256 is still read from objects that carry it.
public enum ContentDigestAlgorithm: String, Sendable, CaseIterable {
    case sha256
    case xxh3 = "xxh3-128"
}

/// A digest of a stream's bytes, with their count.
public struct ContentDigest: Sendable, Equatable, CustomStringConvertible {
    public var algorithm: ContentDigestAlgorithm
    /// Lower-case hex.
    public var hex: String
    public var length: Int64
    public init(_ algorithm: ContentDigestAlgorithm, hex: String, length: Int64) {
        (self.algorithm, self.hex, self.length) = (algorithm, hex, length)
    }
    public var description: String { "\(length) bytes, \(algorithm.rawValue) \(hex)" }
}

/// Passes bytes through unchanged while computing their digest and length. SHA-256 runs on its
/// own thread (`BackgroundSHA256`), beside whatever consumes the bytes; XXH3 is cheap enough to
/// run inline.
public final class DigestingSource: ByteSource, ByteCounting {
    private let upstream: any ByteSource
    public let algorithm: ContentDigestAlgorithm
    private let hasher: any StreamHasher
    public private(set) var byteCount: Int64 = 0

    public init(_ upstream: any ByteSource, algorithm: ContentDigestAlgorithm = .sha256) {
        self.upstream = upstream
        self.algorithm = algorithm
        switch algorithm {
        case .sha256: hasher = BackgroundSHA256()
        case .xxh3: hasher = XXH3Hasher()
        }
    }

    public func next() async throws -> [UInt8]? {
        guard let c = try await upstream.next() else { return nil }
        hasher.update(c)
        byteCount += Int64(c.count)
        return c
    }

    private var digest: String?

    /// Lower-case hex digest of the whole stream (once it has been read to the end; the same
    /// answer on every call).
    public func hexDigest() -> String {
        if let digest { return digest }
        let d = hasher.finalizeHex()
        digest = d
        return d
    }

    /// The digest so far (the whole stream's once it has been read to the end).
    public func contentDigest() -> ContentDigest { ContentDigest(algorithm, hex: hexDigest(), length: byteCount) }

    /// Reads the rest of the stream and returns its digest.
    public func drain() async throws -> ContentDigest {
        while try await next() != nil {}
        return contentDigest()
    }
}

/// One of `ContentDigestAlgorithm`'s hashers, fed a stream's chunks in order.
protocol StreamHasher: AnyObject {
    func update(_ c: [UInt8])
    /// Lower-case hex of the digest of everything fed (call once).
    func finalizeHex() -> String
}

extension BackgroundSHA256: StreamHasher {
    func finalizeHex() -> String { finalizeAndReset() }
}

/// XXH3-128 of a stream (libxxhash), as lower-case hex of its canonical (big-endian) form.
final class XXH3Hasher: StreamHasher {
    private let state: OpaquePointer
    init() {
        state = XXH3_createState()
        XXH3_128bits_reset(state)
    }
    deinit { XXH3_freeState(state) }
    func update(_ c: [UInt8]) { c.withUnsafeBytes { update($0) } }
    func update(_ b: UnsafeRawBufferPointer) { _ = XXH3_128bits_update(state, b.baseAddress, b.count) }
    func finalizeHex() -> String { hexString(finalizeBytes()) }
    /// The digest's 16 bytes, big-endian (XXH128's canonical form).
    func finalizeBytes() -> [UInt8] {
        var canonical = XXH128_canonical_t()
        XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(state))
        return withUnsafeBytes(of: canonical.digest) { Array($0) }
    }
}

/// Lower-case hex of bytes (digests).
public func hexString(_ d: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out: [UInt8] = []
    for b in d {
        out.append(digits[Int(b >> 4)])
        out.append(digits[Int(b & 15)])
    }
    return String(decoding: out, as: UTF8.self)
}

/// SHA-256 of a stream computed on its own thread, so that hashing a large file runs beside its
/// compression (or decompression and writing) instead of in series with it: hashing is as much
/// CPU as LZO, and a single large relation file is one pipeline. At most `depth` chunks wait to
/// be hashed (memory: depth × chunk size); `update` blocks while the hasher is that far behind.
public final class BackgroundSHA256: @unchecked Sendable {
    private let queue = DispatchQueue(label: "wale.sha256")
    private let slots: DispatchSemaphore
    private var hasher = SHA256()  // only touched on `queue`

    public init(depth: Int = 2) { slots = DispatchSemaphore(value: max(1, depth)) }

    /// Queues a chunk (shared, not copied: arrays are values).
    public func update(_ chunk: [UInt8]) {
        slots.wait()
        queue.async {
            self.hasher.update(data: chunk)
            self.slots.signal()
        }
    }

    /// Queues a copy of bytes the caller will reuse.
    public func update(copying b: UnsafeRawBufferPointer) { update([UInt8](b)) }

    /// Waits for every queued chunk; returns the lower-case hex digest and starts a new stream.
    public func finalizeAndReset() -> String {
        queue.sync {
            let d = hexString(hasher.finalize())
            hasher = SHA256()
            return d
        }
    }
}
