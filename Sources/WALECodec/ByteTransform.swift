import Dispatch
import Foundation
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

    /// Room for `n` more bytes at once (appending chunk by chunk would regrow and copy the array).
    mutating func reserve(_ n: Int) { bytes.reserveCapacity(bytes.count + n) }

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

/// Runs a transform on its own thread, so that a stage that costs CPU (native encryption and
/// decryption) works on one chunk while the stage before it (compression, or the download) works
/// on the next, instead of in series on one pipeline's thread. At most `depth` pushed chunks wait
/// for it (memory: depth × max(chunk size, `batch`), plus the output not yet pulled); a push blocks while it is
/// that far behind. One is enough to overlap the two stages: a depth of 2 measured the same speed
/// (backup-push and backup-fetch, file://) and up to 6 MiB more peak RSS (native S3 backup-push).
/// Output is pulled as it is ready; `finish` waits for everything. An error of the stage is thrown
/// by the next push, pull or finish.
public final class BackgroundTransform: ByteTransform, @unchecked Sendable {
    private var made: (any ByteTransform)?  // only touched on `queue`
    private var inner: any ByteTransform { made! }  // after `rethrow`: made, or the job fails first
    private let queue = DispatchQueue(label: "wale.stage")
    private let slots: DispatchSemaphore
    private let lock = NSLock()
    private var ready: [[UInt8]] = []  // under `lock`
    private var failure: (any Error)?  // under `lock`

    public convenience init(_ inner: any ByteTransform, depth: Int = 1) {
        self.init(depth: depth) { inner }
    }

    /// `make` builds the stage on its own thread, so that a costly set-up (native encryption wraps
    /// its data key with X25519 and HKDF: ~0.7 ms, a measurable part of one wal-push) overlaps the
    /// stage before it; its error is thrown as the stage's.
    public init(depth: Int = 1, make: @escaping () throws -> any ByteTransform) {
        slots = DispatchSemaphore(value: max(1, depth))
        nonisolated(unsafe) let make = make  // called once, on `queue`
        queue.async {
            do { self.made = try make() } catch { self.fail(error) }
        }
    }

    private func rethrow() throws {
        lock.lock()
        defer { lock.unlock() }
        if let failure { throw failure }
    }

    /// On `queue`: hands what the stage has made to `ready`, whole (it is all made already; split
    /// into pieces it would be copied once more).
    private func collect() throws {
        while true {
            let out = try inner.pull(limit: .max)
            if out.isEmpty { return }
            lock.lock()
            ready.append(out)
            lock.unlock()
        }
    }

    private func fail(_ error: any Error) {
        lock.lock()
        if failure == nil { failure = error }
        lock.unlock()
    }

    /// Small pushes (a download's 16 KiB TLS records) are gathered up to `batch` before they are
    /// handed over: a thread hop per record cost more than the stage itself. Pushes of at least
    /// `direct` (lzop's blocks, ~100-256 KiB) go as they are: gathering them only copied them.
    static let batch = 256 << 10
    static let direct = 64 << 10
    private var gathered: [UInt8] = []

    public func push(_ input: [UInt8]) throws {
        try rethrow()
        if input.count >= Self.direct {
            if !gathered.isEmpty {
                hand(gathered)
                gathered = []
            }
            return hand(input)
        }
        if gathered.isEmpty { gathered.reserveCapacity(Self.batch + input.count) }
        gathered += input
        if gathered.count >= Self.batch {
            let batch = gathered
            gathered = []
            hand(batch)
        }
    }

    private func hand(_ input: [UInt8]) {
        slots.wait()
        queue.async {
            defer { self.slots.signal() }
            do {
                try self.rethrow()
                try self.inner.push(input)
                try self.collect()
            } catch {
                self.fail(error)
            }
        }
    }

    public func pull(limit: Int) throws -> [UInt8] {
        lock.lock()
        defer { lock.unlock() }
        if let failure { throw failure }
        return ready.isEmpty ? [] : ready.removeFirst()
    }

    public func finish() throws {
        try rethrow()
        if !gathered.isEmpty {
            hand(gathered)
            gathered = []
        }
        queue.sync {
            do {
                try self.rethrow()
                try self.inner.finish()
                try self.collect()
            } catch {
                self.fail(error)
            }
        }
        try rethrow()
    }
}
