import NIOConcurrencyHelpers
import NIOCore
import WALECore

// Upload memory for every parted upload: parts cut from a source, the process-wide budget they are
// held against, and the handles that let a part's storage go as soon as its upload is over.

/// Cuts a source into parts of exactly `size` bytes (the last one shorter); memory: one part
/// plus one source chunk.
final class PartReader {
    let source: any ByteSource
    let size: Int
    var carry = ByteBuffer()
    init(_ source: any ByteSource, size: Int) {
        self.source = source
        self.size = size
    }

    /// The first part: the whole object if it ends within `size + slack` bytes (`ended`), else
    /// exactly `size` bytes with the rest kept for `next()`. `grow` is asked, as the bytes read
    /// pass each count, whether memory for them may be held; nil when it says no (what was read
    /// is dropped).
    func first(slack: Int, grow: (Int) async -> Bool = { _ in true }) async throws -> (bytes: ByteBuffer, ended: Bool)? {
        var out = ByteBufferAllocator().buffer(capacity: size + slack + (1 << 20))
        while out.readableBytes <= size + slack {
            guard let c = try await source.next() else { return (out, true) }
            out.writeBytes(c)
            guard await grow(out.readableBytes) else { return nil }
        }
        return (split(out), false)
    }

    /// The next part: exactly `size` bytes (the last one fewer), in a buffer of exactly that
    /// capacity, so a part in flight pins no more memory than the budget counts for it.
    func next() async throws -> ByteBuffer {
        if carry.readableBytes > size { return split(carry) }
        var out = ByteBufferAllocator().buffer(capacity: size)
        out.writeImmutableBuffer(carry)
        carry = ByteBuffer()
        while out.readableBytes < size, let c = try await source.next() {
            let room = size - out.readableBytes
            if c.count <= room {
                out.writeBytes(c)
            } else {
                out.writeBytes(c[..<room])
                var rest = ByteBufferAllocator().buffer(capacity: c.count - room)
                rest.writeBytes(c[room...])
                carry = rest
            }
        }
        return out
    }

    /// Keeps the first `size` bytes, the rest (copied, so the part's storage can go) for later.
    private func split(_ out: ByteBuffer) -> ByteBuffer {
        var rest = ByteBufferAllocator().buffer(capacity: out.readableBytes - size)
        rest.writeImmutableBuffer(out.getSlice(at: out.readerIndex + size, length: out.readableBytes - size)!)
        carry = rest
        return out.getSlice(at: out.readerIndex, length: size)!
    }
}


/// A byte-counting semaphore: waiters are served in order, each taking its whole amount at once
/// (never part of it, so two uploads cannot each hold half and wait for the other).
public actor ByteBudget {
    public nonisolated let capacity: Int
    var available: Int
    var waiters: [(Int, CheckedContinuation<Void, Never>)] = []

    public init(capacity: Int) {
        self.capacity = max(1, capacity)
        available = self.capacity
    }

    public func acquire(_ bytes: Int) async {
        let n = min(bytes, capacity)
        if waiters.isEmpty && available >= n {
            available -= n
            return
        }
        await withCheckedContinuation { waiters.append((n, $0)) }
    }

    /// Takes `bytes` only if they are free now (ahead of queued waiters: a holder growing its share
    /// must not wait behind uploads that cannot start until it is done); false, taking nothing, if not.
    public func tryAcquire(_ bytes: Int) -> Bool {
        guard bytes <= available else { return false }
        available -= bytes
        return true
    }

    public func release(_ bytes: Int) {
        available = min(capacity, available + min(bytes, capacity))
        while let (need, c) = waiters.first, available >= need {
            waiters.removeFirst()
            available -= need
            c.resume()
        }
    }

    public var free: Int { available }
    /// Requests queued (for tests).
    var waiting: Int { waiters.count }
}

/// A request body as consecutive slices (copies of 256 KiB), each handed out only once the HTTP
/// client's event loops have run everything queued before it.
///
/// async-http-client writes each element on the connection's event loop but decides whether to
/// wait for the socket to drain on the task pulling the elements. With elements always ready, that
/// task queued a whole part before the event loop could say the socket was full, and TLS then held
/// the part's ciphertext as well (measured: 23 MiB of TLS buffers for one 16 MiB WAL upload).
/// After the hop, a full socket has paused the stream before the next slice is offered.
struct BodySlices: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let handle: BodyHandle
    let group: any EventLoopGroup
    var sliceSize = 256 << 10

    struct AsyncIterator: AsyncIteratorProtocol {
        let handle: BodyHandle
        let sliceSize: Int
        let group: any EventLoopGroup
        var offset = 0
        mutating func next() async throws -> ByteBuffer? {
            if offset > 0 {
                for loop in group.makeIterator() { try? await loop.submit {}.get() }
            }
            // A copy, not a view (`RequestBody.slice`); none once the attempt is over.
            guard let body = handle.get() else { return nil }
            let n = Swift.min(sliceSize, body.byteCount - offset)
            guard n > 0 else { return nil }
            let slice = try body.slice(at: offset, count: n)
            guard slice.readableBytes > 0 else { return nil }
            offset += slice.readableBytes
            return slice
        }
    }

    func makeAsyncIterator() -> AsyncIterator { AsyncIterator(handle: handle, sliceSize: sliceSize, group: group) }
}

/// Hands one part's buffer to exactly one upload task.
final class PartBox: Sendable {
    private let box: NIOLockedValueBox<ByteBuffer?>
    init(_ b: ByteBuffer) { box = NIOLockedValueBox(b) }
    func take() -> ByteBuffer { box.withLockedValue { b in defer { b = nil }; return b ?? ByteBuffer() } }
}

/// A request's body, which the sender can let go of when the attempt is over.
final class BodyHandle: Sendable {
    private let box = NIOLockedValueBox<(any RequestBody)?>(nil)
    func set(_ b: any RequestBody) { box.withLockedValue { $0 = b } }
    func get() -> (any RequestBody)? { box.withLockedValue { $0 } }
    func clear() { box.withLockedValue { $0 = nil } }
}
