/// A pull-based stream of byte chunks: the one shape every stage of wal-e's pipelines shares
/// (file reader → encoder → object store, object store → decoder → file writer).
///
/// A source has one consumer; it is not shared between tasks. Chunks are never empty, and their
/// size is bounded by the producer's named constants, so memory never depends on the stream length.
public protocol ByteSource: AnyObject {
    /// The next chunk, or nil once the stream has ended.
    func next() async throws -> [UInt8]?
}

/// A source over chunks already in memory (tests and small objects).
public final class BytesSource: ByteSource {
    private var chunks: [[UInt8]]
    public init(_ bytes: [UInt8], chunkSize: Int = 1 << 20) {
        var c: [[UInt8]] = []
        var i = 0
        while i < bytes.count {
            c.append(Array(bytes[i..<min(bytes.count, i + chunkSize)]))
            i += chunkSize
        }
        chunks = c.reversed()
    }
    public func next() async throws -> [UInt8]? { chunks.popLast() }
}

extension ByteSource {
    /// Reads the whole stream into memory. Only for small objects (sentinels, tests).
    public func collect(limit: Int = 64 << 20) async throws -> [UInt8] {
        var out: [UInt8] = []
        while let c = try await next() {
            out += c
            if out.count > limit { throw WALEError(.internal, "object larger than \(limit) bytes read into memory") }
        }
        return out
    }
}

/// A source that knows how many bytes went through it.
public protocol ByteCounting: AnyObject {
    var byteCount: Int64 { get }
}

/// Passes bytes through unchanged, counting them.
public final class CountingSource: ByteSource, ByteCounting {
    private let upstream: any ByteSource
    public private(set) var byteCount: Int64 = 0

    public init(_ upstream: any ByteSource) { self.upstream = upstream }

    public func next() async throws -> [UInt8]? {
        guard let c = try await upstream.next() else { return nil }
        byteCount += Int64(c.count)
        return c
    }
}

/// `head`, then the rest of `upstream` (a source whose first chunk was already read to look at).
public final class PrefixedSource: ByteSource {
    private var head: [UInt8]?
    private let upstream: any ByteSource

    public init(_ head: [UInt8], _ upstream: any ByteSource) {
        self.head = head.isEmpty ? nil : head
        self.upstream = upstream
    }

    public func next() async throws -> [UInt8]? {
        if let h = head {
            head = nil
            return h
        }
        return try await upstream.next()
    }
}
