import CLZO
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
                guard try decodeBlock(into: &out) else { return try needMore(out) }
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

    private func decodeBlock(into out: inout [UInt8]) throws -> Bool {
        guard input.count >= 4 else { return false }
        let dstLen = Int(input.u32(at: 0))
        if dstLen == 0 {
            input.consume(4)
            state = .done
            return true
        }
        guard dstLen <= Lzop.maxBlockSize else { throw Lzop.corrupt("block of \(dstLen) bytes exceeds lzop's limit") }
        var o = 4
        guard input.count >= 8 else { return false }
        let srcLen = Int(input.u32(at: o))
        o += 4
        guard srcLen <= dstLen, srcLen > 0 else { throw Lzop.corrupt("compressed block length \(srcLen) > \(dstLen)") }
        var dAdler: UInt32?, dCRC: UInt32?, cAdler: UInt32?, cCRC: UInt32?
        let checksumCount =
            (flags & Lzop.fAdler32D != 0 ? 1 : 0) + (flags & Lzop.fCRC32D != 0 ? 1 : 0)
            + (srcLen < dstLen ? (flags & Lzop.fAdler32C != 0 ? 1 : 0) + (flags & Lzop.fCRC32C != 0 ? 1 : 0) : 0)
        guard input.count >= o + 4 * checksumCount + srcLen else { return false }
        if flags & Lzop.fAdler32D != 0 { dAdler = input.u32(at: o); o += 4 }
        if flags & Lzop.fCRC32D != 0 { dCRC = input.u32(at: o); o += 4 }
        if srcLen < dstLen {
            if flags & Lzop.fAdler32C != 0 { cAdler = input.u32(at: o); o += 4 }
            if flags & Lzop.fCRC32C != 0 { cCRC = input.u32(at: o); o += 4 }
        }
        let dataStart = o
        try input.withUnconsumed { p in
            let src = UnsafeRawBufferPointer(rebasing: p[dataStart..<(dataStart + srcLen)])
            if let cAdler, Lzop.adler32(1, src) != cAdler { throw Lzop.corrupt("compressed-data Adler-32 mismatch") }
            if let cCRC, Lzop.crc32(0, src) != cCRC { throw Lzop.corrupt("compressed-data CRC-32 mismatch") }
            let base = out.count
            if srcLen == dstLen {
                out.append(contentsOf: src)
            } else {
                out.append(contentsOf: repeatElement(0, count: dstLen))
                var produced = lzo_uint(dstLen)
                let rc = out.withUnsafeMutableBytes { dst in
                    lzo1x_decompress_safe(
                        src.baseAddress!.assumingMemoryBound(to: UInt8.self), lzo_uint(srcLen),
                        dst.baseAddress!.advanced(by: base).assumingMemoryBound(to: UInt8.self), &produced, nil)
                }
                guard rc == LZO_E_OK, Int(produced) == dstLen else {
                    throw Lzop.corrupt("LZO1X data does not decompress (error \(rc))")
                }
            }
            let data = out.withUnsafeBytes { UnsafeRawBufferPointer(rebasing: $0[base...]) }
            if let dAdler, Lzop.adler32(1, data) != dAdler { throw Lzop.corrupt("block Adler-32 mismatch") }
            if let dCRC, Lzop.crc32(0, data) != dCRC { throw Lzop.corrupt("block CRC-32 mismatch") }
        }
        input.consume(dataStart + srcLen)
        return true
    }
}
