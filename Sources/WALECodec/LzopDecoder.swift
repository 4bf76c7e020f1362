import CLZO
import Dispatch
import WALECore

/// Reads lzop's container (any LZO1X method lzop writes), verifying the header checksum and every
/// block checksum the header's flags announce. Truncated or trailing data is an error.
public final class LzopDecoder: ByteTransform {
    private enum State { case header, blocks, done }
    private var input = InputBuffer()
    private var state = State.header
    private var flags: UInt32 = 0
    private var finished = false
    private var block: [UInt8] = []

    public init() { precondition(Lzop.initialized) }

    public func push(_ chunk: [UInt8]) throws { input.append(chunk) }

    public func finish() throws {
        finished = true
    }

    public func pull(limit: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        while out.count < limit {
            switch state {
            case .header:
                guard try parseHeader() else { return try needMore(out) }
            case .blocks:
                // One batch per pull, decoded straight into an array of its own: appending a
                // batch to bytes already out would zero-fill and copy it first (restore's
                // profile: memset and memmove were 23 % of its CPU).
                if !out.isEmpty { return out }
                guard let batch = try decodeBatch(limit: limit) else { return try needMore(out) }
                out = batch
            case .done:
                if input.count > 0 { throw Lzop.corrupt("\(input.count) bytes of trailing data after the end-of-stream marker") }
                return out
            }
        }
        return out
    }

    /// Called when the buffered input is not enough for the next step.
    private func needMore(_ out: [UInt8]) throws -> [UInt8] {
        if finished && out.isEmpty {
            throw Lzop.corrupt(state == .header ? "truncated header" : "truncated stream (no end-of-stream marker)")
        }
        return out
    }

    private func parseHeader() throws -> Bool {
        let m = Lzop.magic.count
        guard input.count >= m else {
            if input.count > 0, !input.slice(0, input.count).elementsEqual(Lzop.magic.prefix(input.count)) {
                throw Lzop.corrupt("bad magic (not an lzop file)")
            }
            return false
        }
        guard input.slice(0, m).elementsEqual(Lzop.magic) else { throw Lzop.corrupt("bad magic (not an lzop file)") }
        var o = m
        func need(_ n: Int) -> Bool { input.count >= o + n }
        guard need(4) else { return false }
        let version = input.u16(at: o)
        o += 4  // version, library version
        if version >= 0x0940 {
            guard need(2) else { return false }
            let needed = input.u16(at: o)
            if needed > 0x1040 { throw Lzop.corrupt("needs lzop version \(String(needed, radix: 16)) to extract") }
            o += 2
        }
        guard need(1) else { return false }
        let method = input.u8(at: o)
        o += 1
        guard (1...3).contains(method) else { throw Lzop.corrupt("unsupported compression method \(method)") }
        if version >= 0x0940 { o += 1 }  // level
        guard need(4) else { return false }
        flags = input.u32(at: o)
        o += 4
        if flags & Lzop.fMultipart != 0 { throw Lzop.corrupt("multipart lzop files are not supported") }
        if flags & Lzop.fHFilter != 0 { o += 4 }
        o += 8  // mode, mtime low
        if version >= 0x0940 { o += 4 }  // mtime high
        guard need(1) else { return false }
        let nameLength = Int(input.u8(at: o))
        o += 1 + nameLength
        guard need(4) else { return false }
        let stored = input.u32(at: o)
        let computed = input.withUnconsumed { p -> UInt32 in
            let covered = UnsafeRawBufferPointer(rebasing: p[m..<o])
            return flags & Lzop.fHCRC32 != 0 ? Lzop.crc32(0, covered) : Lzop.adler32(1, covered)
        }
        guard stored == computed else { throw Lzop.corrupt("header checksum mismatch") }
        o += 4
        if flags & Lzop.fHExtraField != 0 {
            guard need(4) else { return false }
            let extra = Int(input.u32(at: o))
            guard extra < 1 << 20 else { throw Lzop.corrupt("extra header field too large") }
            guard need(4 + extra + 4) else { return false }
            o += 4 + extra + 4
        }
        input.consume(o)
        state = .blocks
        return true
    }

    /// One block whose bytes are all buffered: where its data starts and what to check.
    private struct Block: Sendable {
        var dstLen: Int
        var srcLen: Int
        var dataOffset: Int
        var dAdler: UInt32?, dCRC: UInt32?, cAdler: UInt32?, cCRC: UInt32?
    }

    /// Parses the block header at offset `o` of the buffered input. nil: not all of it is buffered yet.
    private func blockHeader(at o: Int) throws -> (Block?, end: Bool, next: Int) {
        guard input.count >= o + 4 else { return (nil, false, o) }
        let dstLen = Int(input.u32(at: o))
        if dstLen == 0 { return (nil, true, o + 4) }
        guard dstLen <= Lzop.maxBlockSize else { throw Lzop.corrupt("block of \(dstLen) bytes exceeds lzop's limit") }
        guard input.count >= o + 8 else { return (nil, false, o) }
        let srcLen = Int(input.u32(at: o + 4))
        guard srcLen <= dstLen, srcLen > 0 else { throw Lzop.corrupt("compressed block length \(srcLen) > \(dstLen)") }
        var p = o + 8
        let compressed = srcLen < dstLen
        let sums = (flags & Lzop.fAdler32D != 0 ? 1 : 0) + (flags & Lzop.fCRC32D != 0 ? 1 : 0)
            + (compressed ? (flags & Lzop.fAdler32C != 0 ? 1 : 0) + (flags & Lzop.fCRC32C != 0 ? 1 : 0) : 0)
        guard input.count >= p + 4 * sums + srcLen else { return (nil, false, o) }
        var b = Block(dstLen: dstLen, srcLen: srcLen, dataOffset: 0)
        if flags & Lzop.fAdler32D != 0 { b.dAdler = input.u32(at: p); p += 4 }
        if flags & Lzop.fCRC32D != 0 { b.dCRC = input.u32(at: p); p += 4 }
        if compressed {
            if flags & Lzop.fAdler32C != 0 { b.cAdler = input.u32(at: p); p += 4 }
            if flags & Lzop.fCRC32C != 0 { b.cCRC = input.u32(at: p); p += 4 }
        }
        b.dataOffset = p
        return (b, false, p + srcLen)
    }

    /// The next blocks (up to `batchBlocks`, and up to `limit` bytes once one is in), decoded on
    /// every core; nil when not one whole block (or the end marker) is buffered yet.
    private func decodeBatch(limit: Int) throws -> [UInt8]? {
        var blocks: [Block] = []
        var o = 0
        var ended = false
        var planned = 0
        while blocks.count < Self.batchBlocks && planned < limit {
            let (b, end, next) = try blockHeader(at: o)
            if end {
                ended = true
                o = next
                break
            }
            guard let b else { break }
            blocks.append(b)
            planned += b.dstLen
            o = next
        }
        if blocks.isEmpty {
            guard ended else { return nil }
            input.consume(o)
            state = .done
            return []
        }
        var offsets: [Int] = []
        var total = 0
        for b in blocks {
            offsets.append(total)
            total += b.dstLen
        }
        var failures = [String?](repeating: nil, count: blocks.count)
        // Uninitialized, not zero-filled: every byte is written by its block's decoder, and a
        // batch with a failed block is thrown away.
        let out = [UInt8](unsafeUninitializedCapacity: total) { dst, count in
            count = total
            input.withUnconsumed { src in
                nonisolated(unsafe) let srcBase = src.baseAddress!
                nonisolated(unsafe) let dstBase = UnsafeMutableRawPointer(dst.baseAddress!)
                let work: @Sendable (Int) -> String? = { [blocks, offsets] i in
                    Self.decode(blocks[i], src: srcBase, dst: dstBase + offsets[i])
                }
                if blocks.count == 1 {
                    failures[0] = work(0)
                } else {
                    let results = UnsafeMutablePointer<String?>.allocate(capacity: blocks.count)
                    results.initialize(repeating: nil, count: blocks.count)
                    nonisolated(unsafe) let shared = results
                    DispatchQueue.concurrentPerform(iterations: blocks.count) { i in shared[i] = work(i) }
                    for i in 0..<blocks.count { failures[i] = results[i] }
                    results.deinitialize(count: blocks.count)
                    results.deallocate()
                }
            }
        }
        if let f = failures.compactMap({ $0 }).first { throw Lzop.corrupt(f) }
        input.consume(o)
        if ended { state = .done }
        return out
    }

    static let batchBlocks = 8

    /// Decompresses (or copies) one block and checks its checksums; returns a problem, or nil.
    private static func decode(_ b: Block, src: UnsafeRawPointer, dst: UnsafeMutableRawPointer) -> String? {
        let data = UnsafeRawBufferPointer(start: src + b.dataOffset, count: b.srcLen)
        if let a = b.cAdler, Lzop.adler32(1, data) != a { return "compressed-data Adler-32 mismatch" }
        if let c = b.cCRC, Lzop.crc32(0, data) != c { return "compressed-data CRC-32 mismatch" }
        if b.srcLen == b.dstLen {
            dst.copyMemory(from: data.baseAddress!, byteCount: b.srcLen)
        } else {
            var produced = lzo_uint(b.dstLen)
            let rc = lzo1x_decompress_safe(
                data.baseAddress!.assumingMemoryBound(to: UInt8.self), lzo_uint(b.srcLen),
                dst.assumingMemoryBound(to: UInt8.self), &produced, nil)
            guard rc == LZO_E_OK, Int(produced) == b.dstLen else { return "LZO1X data does not decompress (error \(rc))" }
        }
        let plain = UnsafeRawBufferPointer(start: dst, count: b.dstLen)
        if let a = b.dAdler, Lzop.adler32(1, plain) != a { return "block Adler-32 mismatch" }
        if let c = b.dCRC, Lzop.crc32(0, plain) != c { return "block CRC-32 mismatch" }
        return nil
    }
}
