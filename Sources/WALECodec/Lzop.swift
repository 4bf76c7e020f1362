import CLZO
import CWALESupport
import Dispatch
import Synchronization
import WALECore
#if canImport(Glibc)
import Glibc
#endif

/// The lzop container format (what `lzop -c` writes and WAL-E stores), over LZO1X-1.
public enum Lzop {
    public static let magic: [UInt8] = [0x89, 0x4C, 0x5A, 0x4F, 0x00, 0x0D, 0x0A, 0x1A, 0x0A]
    /// lzop's block size: 256 KiB of uncompressed data per block.
    public static let blockSize = 256 * 1024
    /// The largest block lzop itself accepts when reading (its MAX_BLOCK_SIZE).
    public static let maxBlockSize = 64 * 1024 * 1024

    static let fAdler32D: UInt32 = 0x1
    static let fAdler32C: UInt32 = 0x2
    static let fStdin: UInt32 = 0x4
    static let fStdout: UInt32 = 0x8
    static let fHExtraField: UInt32 = 0x40
    static let fCRC32D: UInt32 = 0x100
    static let fCRC32C: UInt32 = 0x200
    static let fMultipart: UInt32 = 0x400
    static let fHFilter: UInt32 = 0x800
    static let fHCRC32: UInt32 = 0x1000
    static let fOSUnix: UInt32 = 0x0300_0000

    static let initialized: Bool = { wale_lzo_init() == 0 }()

    static func adler32(_ seed: UInt32, _ p: UnsafeRawBufferPointer) -> UInt32 {
        wale_adler32(seed, p.baseAddress, p.count)
    }
    static func crc32(_ seed: UInt32, _ p: UnsafeRawBufferPointer) -> UInt32 {
        UInt32(lzo_crc32(UInt32(seed), p.baseAddress?.assumingMemoryBound(to: UInt8.self), lzo_uint(p.count)))
    }
    static func corrupt(_ what: String) -> WALEError {
        WALEError(.corrupt, "lzop stream is corrupt: \(what)")
    }
}

@inline(__always) func appendBE32(_ out: inout [UInt8], _ v: UInt32) {
    out.append(UInt8(v >> 24)); out.append(UInt8(truncatingIfNeeded: v >> 16))
    out.append(UInt8(truncatingIfNeeded: v >> 8)); out.append(UInt8(truncatingIfNeeded: v))
}

/// Compresses into lzop's container with LZO1X-1, 256 KiB blocks, Adler-32 of each block's data;
/// blocks that do not shrink are stored raw, exactly as `lzop -c` does. Batches of blocks are
/// compressed on several cores at once (they are independent) and written out in order.
///
/// The cores are shared among the encoders of the process: each batch is as wide as two blocks
/// per core divided among the parallel encoders running now. Four backup partitions in flight on
/// two cores compress a block at a time each (the kernel already keeps both cores busy, and
/// memory stays at one block per stream); the last partition left, often one large relation
/// file, gets every core. A lone wal-push gets every core too.
public final class LzopEncoder: ByteTransform {
    /// The widest batch: two blocks per core, 2 to 8 (memory: this × (256 KiB input + 272 KiB
    /// output + 128 KiB LZO state), allocated only when a batch that wide is compressed).
    public static let batchBlocks = min(8, max(2, 2 * Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))
    /// Parallel encoders alive now, among which the cores are shared.
    static let parallelEncoders = Atomic<Int>(0)
    private var registered = true
    /// The input not compressed yet: the pushed chunks themselves, in order (the first from
    /// `consumed` on), not copied into one buffer. A block lying in one chunk is compressed where
    /// it lies; only a block across chunks is put together, in its slot's staging buffer. Copying
    /// every chunk into a contiguous buffer cost a copy of all input (3 % of backup-push's CPU) and
    /// a second ~1 MiB buffer per stream.
    private var chunks: [[UInt8]] = []
    private var consumed = 0
    private var pending = 0
    private var finished = false
    private var headerDone = false
    private var trailerDone = false
    private let slots: Slots
    private let mode: UInt32
    private let mtime: UInt64

    /// Per-block scratch memory, allocated when a batch first needs it and reused after.
    final class Slots: @unchecked Sendable {
        let outCapacity = Lzop.blockSize + Lzop.blockSize / 16 + 64 + 3
        let workSize = Int(wale_lzo1x_1_mem_compress())
        private(set) var out: [UnsafeMutableRawPointer] = []
        private var work: [UnsafeMutableRawPointer] = []
        /// Per-slot room for a block that spans two or more chunks (allocated on first need).
        private var staging: [UnsafeMutableRawPointer?] = []
        // Raw memory: a batch's blocks write their own entries from several threads at once.
        let lengths: UnsafeMutablePointer<Int>
        let sums: UnsafeMutablePointer<UInt32>
        let compressedSums: UnsafeMutablePointer<UInt32>
        init(_ n: Int) {
            lengths = .allocate(capacity: n)
            sums = .allocate(capacity: n)
            compressedSums = .allocate(capacity: n)
        }
        deinit {
            out.forEach { $0.deallocate() }
            work.forEach { $0.deallocate() }
            staging.forEach { $0?.deallocate() }
            lengths.deallocate()
            sums.deallocate()
            compressedSums.deallocate()
        }
        /// Makes slots 0..<n usable (call before a batch, on one thread; `out` and `work` are only
        /// read while the batch runs).
        func ensure(_ n: Int) {
            while out.count < n {
                out.append(.allocate(byteCount: outCapacity, alignment: 16))
                work.append(.allocate(byteCount: workSize, alignment: 16))
                staging.append(nil)
            }
        }
        /// Slot `i`'s staging buffer (one block), allocated on first use (on one thread).
        func stagingBuffer(_ i: Int) -> UnsafeMutableRawPointer {
            if let b = staging[i] { return b }
            let b = UnsafeMutableRawPointer.allocate(byteCount: Lzop.blockSize, alignment: 16)
            staging[i] = b
            return b
        }
        /// Compresses `src` into slot `i`; records the compressed length, the data's Adler-32 and
        /// the compressed bytes' Adler-32 (when they are smaller, i.e. will be stored).
        /// Slots are disjoint, so batches call this from several threads at once.
        func compress(_ i: Int, _ src: UnsafeRawPointer, _ n: Int) {
            let sum = wale_adler32(1, src, n)
            var produced: lzo_uint = 0
            let rc = lzo1x_1_compress(
                src.assumingMemoryBound(to: UInt8.self), lzo_uint(n), out[i].assumingMemoryBound(to: UInt8.self), &produced, work[i])
            precondition(rc == LZO_E_OK, "lzo1x_1_compress failed with \(rc)")
            lengths[i] = Int(produced)
            sums[i] = sum
            compressedSums[i] = Int(produced) < n ? wale_adler32(1, out[i], Int(produced)) : 0
        }
    }

    /// How many blocks the next batch compresses at once.
    private var width: Int {
        let sharing = max(1, Self.parallelEncoders.load(ordering: .relaxed))
        return max(1, Self.batchBlocks / sharing)
    }

    private func unregister() {
        if registered {
            registered = false
            Self.parallelEncoders.subtract(1, ordering: .relaxed)
        }
    }

    deinit { unregister() }

    /// `mode` and `mtime` go into the header as lzop records them for a file on stdin (WAL-E's
    /// wal-push passes the segment's st_mode and mtime; pipes give 0 and the current time).
    public init(mode: UInt32 = 0, mtime: UInt64 = 0) {
        precondition(Lzop.initialized, "lzo_init() failed: liblzo2 does not match its headers")
        slots = Slots(Self.batchBlocks)
        self.mode = mode
        self.mtime = mtime
        Self.parallelEncoders.add(1, ordering: .relaxed)
    }

    public func push(_ chunk: [UInt8]) throws {
        guard !chunk.isEmpty else { return }
        // Small chunks are gathered (a cheap copy), so that a block spans a bounded number of
        // chunks however small the pushes; up to a MiB each, so that the first is eventually
        // used up and dropped rather than growing while it is consumed.
        if chunk.count < 64 << 10, let last = chunks.indices.last, chunks[last].count < 1 << 20 {
            chunks[last] += chunk
        } else {
            chunks.append(chunk)
        }
        pending += chunk.count
    }
    public func finish() throws { finished = true }

    public func pull(limit: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        if !headerDone {
            out += header()
            headerDone = true
        }
        // Room for all this call writes (up to `limit`, then the batch that crosses it) at once:
        // growing by doubling copied the output again, up to twice over.
        if pending >= width * Lzop.blockSize || (finished && pending > 0) {
            out.reserveCapacity(out.count + min(limit, pending) + width * (Lzop.blockSize + 16) + 4)
        }
        while out.count < limit {
            let full = pending / Lzop.blockSize
            // A whole batch at a time (its blocks compress in parallel), whatever the size of
            // the chunks pushed in; only the end of input makes a short batch.
            let batch = width
            if full < batch && !finished { break }
            let blocks = min(batch, full > 0 ? full : (finished && pending > 0 ? 1 : 0))
            if blocks == 0 { break }
            slots.ensure(blocks)
            let sizes = (0..<blocks).map { min(Lzop.blockSize, pending - $0 * Lzop.blockSize) }
            let total = sizes.reduce(0, +)
            let slots = self.slots
            withChunkBases(chunks[..<chunksHolding(total)], []) { bases in
                let sources = blockSources(sizes, bases)
                if blocks == 1 {
                    slots.compress(0, sources[0], sizes[0])
                } else {
                    // The chunks outlive the call; each iteration reads its own block only.
                    nonisolated(unsafe) let shared = sources
                    DispatchQueue.concurrentPerform(iterations: blocks) { i in
                        slots.compress(i, shared[i], sizes[i])
                    }
                }
                for i in 0..<blocks {
                    appendBlock(
                        UnsafeRawBufferPointer(start: sources[i], count: sizes[i]), adler: slots.sums[i],
                        compressed: UnsafeRawBufferPointer(start: slots.out[i], count: slots.lengths[i]),
                        compressedAdler: slots.compressedSums[i], to: &out)
                }
            }
            consume(total)
        }
        if finished && pending == 0 && !trailerDone {
            out += [0, 0, 0, 0]
            trailerDone = true
            unregister()  // done compressing: the cores go to the encoders still at work
        }
        return out
    }

    /// Calls `body` with the base addresses of `rest` (pending chunks, all non-empty).
    private func withChunkBases<R>(_ rest: ArraySlice<[UInt8]>, _ bases: [UnsafeRawPointer], _ body: ([UnsafeRawPointer]) -> R) -> R {
        guard let first = rest.first else { return body(bases) }
        return first.withUnsafeBytes { withChunkBases(rest.dropFirst(), bases + [$0.baseAddress!], body) }
    }

    /// Where each block of the batch starts: inside a chunk when it lies in one, else in its
    /// slot's staging buffer, where its pieces are copied.
    private func blockSources(_ sizes: [Int], _ bases: [UnsafeRawPointer]) -> [UnsafeRawPointer] {
        var chunk = 0
        var offset = consumed  // within chunks[chunk]
        return sizes.indices.map { i in
            let size = sizes[i]
            if chunks[chunk].count - offset >= size {
                let p = bases[chunk] + offset
                offset += size
                if offset == chunks[chunk].count && chunk + 1 < chunks.count { chunk += 1; offset = 0 }
                return p
            }
            let staged = slots.stagingBuffer(i)
            var filled = 0
            while filled < size {
                let n = min(size - filled, chunks[chunk].count - offset)
                (staged + filled).copyMemory(from: bases[chunk] + offset, byteCount: n)
                filled += n
                offset += n
                if offset == chunks[chunk].count && chunk + 1 < chunks.count { chunk += 1; offset = 0 }
            }
            return UnsafeRawPointer(staged)
        }
    }

    /// How many of the pending chunks hold the next `n` bytes.
    private func chunksHolding(_ n: Int) -> Int {
        var k = 0
        var covered = -consumed
        while covered < n {
            covered += chunks[k].count
            k += 1
        }
        return k
    }

    /// Drops `n` compressed bytes from the front of the pending chunks.
    private func consume(_ n: Int) {
        pending -= n
        var left = n
        while left > 0 {
            let inFirst = chunks[0].count - consumed
            if left < inFirst {
                consumed += left
                return
            }
            left -= inFirst
            chunks.removeFirst()
            consumed = 0
        }
    }

    func header() -> [UInt8] {
        var h = Lzop.magic
        var body: [UInt8] = []
        body += [0x10, 0x40]  // lzop version 1.040
        let lib = UInt16(truncatingIfNeeded: wale_lzo_version())
        body += [UInt8(lib >> 8), UInt8(lib & 0xFF)]
        body += [0x09, 0x40]  // version needed to extract
        body += [1, 5]  // method M_LZO1X_1, level 5
        // Both Adler-32s: of each block's data, and of its compressed bytes. The second is not
        // WAL-E's (lzop's default) but is lzop's format (`lzop -d` checks it): without it a
        // flipped bit in a match offset that points into a run of equal bytes decodes to the same
        // data, and verify would call a damaged object sound.
        appendBE32(&body, Lzop.fOSUnix | Lzop.fStdout | Lzop.fStdin | Lzop.fAdler32D | Lzop.fAdler32C)
        appendBE32(&body, mode)
        appendBE32(&body, UInt32(truncatingIfNeeded: mtime))
        appendBE32(&body, UInt32(truncatingIfNeeded: mtime >> 32))
        body.append(0)  // no file name
        let sum = body.withUnsafeBytes { Lzop.adler32(1, $0) }
        h += body
        appendBE32(&h, sum)
        return h
    }

    private func appendBlock(
        _ block: UnsafeRawBufferPointer, adler: UInt32, compressed: UnsafeRawBufferPointer, compressedAdler: UInt32, to out: inout [UInt8]
    ) {
        appendBE32(&out, UInt32(block.count))
        let stored = compressed.count >= block.count
        appendBE32(&out, stored ? UInt32(block.count) : UInt32(compressed.count))
        appendBE32(&out, adler)
        if !stored { appendBE32(&out, compressedAdler) }
        out.append(contentsOf: stored ? block : compressed)
    }
}
