import WALECore

/// One stage of a byte pipeline (a compressor, a decompressor, a digest...).
///
/// Input is pushed in, output is pulled out in pieces of bounded size: a decoder fed one
/// megabyte of highly compressed input never materialises all of its output at once.
public protocol ByteTransform: AnyObject {
    /// Gives the stage more input.
    func push(_ input: [UInt8]) throws
    /// Up to about `limit` bytes of output; empty when the stage needs more input (or is done).
    func pull(limit: Int) throws -> [UInt8]
    /// Marks the end of input. Pulls then drain what is left. Throws if the input was truncated.
    func finish() throws
}

/// The output chunk size of transforms: bounds memory per pipeline stage.
public let pipelineChunkSize = 1 << 20

/// A `ByteSource` that runs `upstream` through a transform.
public final class TransformedSource: ByteSource {
    private let upstream: any ByteSource
    private let transform: any ByteTransform
    private var inputDone = false

    public init(_ upstream: any ByteSource, _ transform: any ByteTransform) {
        self.upstream = upstream
        self.transform = transform
    }

    public func next() async throws -> [UInt8]? {
        while true {
            let out = try transform.pull(limit: pipelineChunkSize)
            if !out.isEmpty { return out }
            if inputDone { return nil }
            if let chunk = try await upstream.next() {
                try transform.push(chunk)
            } else {
                try transform.finish()
                inputDone = true
            }
        }
    }
}

/// Output a transform has made and not yet handed out: whole when it fits the limit (no copy),
/// otherwise in pieces of at most `limit` bytes.
struct OutputBuffer {
    var bytes: [UInt8] = []

    mutating func append(_ more: [UInt8]) { if bytes.isEmpty { bytes = more } else { bytes += more } }
    mutating func append(contentsOf more: some Sequence<UInt8>) { bytes.append(contentsOf: more) }

    mutating func take(limit: Int) -> [UInt8] {
        if bytes.count <= limit {
            defer { bytes = [] }
            return bytes
        }
        let out = Array(bytes[0..<limit])
        bytes.removeFirst(limit)
        return out
    }
}

/// Input bytes not yet consumed by a transform, with cheap consumption from the front.
struct InputBuffer {
    private(set) var bytes: [UInt8] = []
    private(set) var start = 0

    var count: Int { bytes.count - start }

    mutating func append(_ more: [UInt8]) {
        if start > 0 && (start >= bytes.count / 2 || bytes.count - start == 0) {
            bytes.removeFirst(start)
            start = 0
        }
        if bytes.isEmpty { bytes = more } else { bytes += more }
    }

    mutating func consume(_ n: Int) {
        start += n
        if start == bytes.count {
            bytes.removeAll(keepingCapacity: true)
            start = 0
        }
    }

    /// Big-endian u32 at offset `o` from the unconsumed start.
    func u32(at o: Int) -> UInt32 {
        let i = start + o
        return UInt32(bytes[i]) << 24 | UInt32(bytes[i + 1]) << 16 | UInt32(bytes[i + 2]) << 8 | UInt32(bytes[i + 3])
    }
    func u16(at o: Int) -> UInt16 { UInt16(bytes[start + o]) << 8 | UInt16(bytes[start + o + 1]) }
    func u8(at o: Int) -> UInt8 { bytes[start + o] }

    func withUnconsumed<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try bytes.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[start...])) }
    }
    func slice(_ o: Int, _ n: Int) -> ArraySlice<UInt8> { bytes[(start + o)..<(start + o + n)] }
}
