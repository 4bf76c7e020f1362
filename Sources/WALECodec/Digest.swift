import Crypto
import Dispatch
import WALECore

/// Passes bytes through unchanged while computing their SHA-256 and length; the hashing runs on
/// its own thread (`BackgroundSHA256`), beside whatever consumes the bytes (wal-push compresses
/// them on the cores meanwhile).
public final class DigestingSource: ByteSource, ByteCounting {
    private let upstream: any ByteSource
    private let hasher = BackgroundSHA256()
    public private(set) var byteCount: Int64 = 0

    public init(_ upstream: any ByteSource) { self.upstream = upstream }

    public func next() async throws -> [UInt8]? {
        guard let c = try await upstream.next() else { return nil }
        hasher.update(c)
        byteCount += Int64(c.count)
        return c
    }

    private var digest: String?

    /// Lower-case hex SHA-256 of the whole stream (once it has been read to the end; the same
    /// answer on every call).
    public func hexDigest() -> String {
        if let digest { return digest }
        let d = hasher.finalizeAndReset()
        digest = d
        return d
    }

    /// Reads the rest of the stream and returns (SHA-256 hex, length).
    public func drain() async throws -> (String, Int64) {
        while try await next() != nil {}
        return (hexDigest(), byteCount)
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
