import Crypto
import WALECore

/// Passes bytes through unchanged while computing their SHA-256 and length.
public final class DigestingSource: ByteSource, ByteCounting {
    private let upstream: any ByteSource
    private var hasher = SHA256()
    public private(set) var byteCount: Int64 = 0

    public init(_ upstream: any ByteSource) { self.upstream = upstream }

    public func next() async throws -> [UInt8]? {
        guard let c = try await upstream.next() else { return nil }
        hasher.update(data: c)
        byteCount += Int64(c.count)
        return c
    }

    /// Lower-case hex SHA-256 of everything read so far (call once, at the end).
    public func hexDigest() -> String { hexString(hasher.finalize()) }

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
