import CLZO
import WALECore

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
        UInt32(lzo_adler32(UInt32(seed), p.baseAddress?.assumingMemoryBound(to: UInt8.self), lzo_uint(p.count)))
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
/// blocks that do not shrink are stored raw, exactly as `lzop -c` does.
public final class LzopEncoder: ByteTransform {
    private var input = InputBuffer()
    private var finished = false
    private var headerDone = false
    private var trailerDone = false
    private var workMemory: [UInt8]
    private var scratch: [UInt8]
    private let mode: UInt32
    private let mtime: UInt64

    /// `mode` and `mtime` go into the header as lzop records them for a file on stdin (WAL-E's
    /// wal-push passes the segment's st_mode and mtime; pipes give 0 and the current time).
    public init(mode: UInt32 = 0, mtime: UInt64 = 0) {
        precondition(Lzop.initialized, "lzo_init() failed: liblzo2 does not match its headers")
        workMemory = [UInt8](repeating: 0, count: Int(wale_lzo1x_1_mem_compress()))
        scratch = [UInt8](repeating: 0, count: Lzop.blockSize + Lzop.blockSize / 16 + 64 + 3)
        self.mode = mode
        self.mtime = mtime
    }

    public func push(_ chunk: [UInt8]) throws { input.append(chunk) }
    public func finish() throws { finished = true }

    public func pull(limit: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        if !headerDone {
            out += header()
            headerDone = true
        }
        while out.count < limit, input.count >= Lzop.blockSize || (finished && input.count > 0) {
            let n = min(Lzop.blockSize, input.count)
            input.withUnconsumed { appendBlock(UnsafeRawBufferPointer(rebasing: $0[0..<n]), to: &out) }
            input.consume(n)
        }
        if finished && input.count == 0 && !trailerDone {
            out += [0, 0, 0, 0]
            trailerDone = true
        }
        return out
    }

    func header() -> [UInt8] {
        var h = Lzop.magic
        var body: [UInt8] = []
        body += [0x10, 0x40]  // lzop version 1.040
        let lib = UInt16(truncatingIfNeeded: wale_lzo_version())
        body += [UInt8(lib >> 8), UInt8(lib & 0xFF)]
        body += [0x09, 0x40]  // version needed to extract
        body += [1, 5]  // method M_LZO1X_1, level 5
        appendBE32(&body, Lzop.fOSUnix | Lzop.fStdout | Lzop.fStdin | Lzop.fAdler32D)
        appendBE32(&body, mode)
        appendBE32(&body, UInt32(truncatingIfNeeded: mtime))
        appendBE32(&body, UInt32(truncatingIfNeeded: mtime >> 32))
        body.append(0)  // no file name
        let sum = body.withUnsafeBytes { Lzop.adler32(1, $0) }
        h += body
        appendBE32(&h, sum)
        return h
    }

    private func appendBlock(_ block: UnsafeRawBufferPointer, to out: inout [UInt8]) {
        var compressedLength: lzo_uint = 0
        let rc = scratch.withUnsafeMutableBytes { dst in
            workMemory.withUnsafeMutableBytes { wrk in
                lzo1x_1_compress(
                    block.baseAddress!.assumingMemoryBound(to: UInt8.self), lzo_uint(block.count),
                    dst.baseAddress!.assumingMemoryBound(to: UInt8.self), &compressedLength, wrk.baseAddress)
            }
        }
        precondition(rc == LZO_E_OK, "lzo1x_1_compress failed with \(rc)")
        appendBE32(&out, UInt32(block.count))
        let stored = Int(compressedLength) >= block.count
        appendBE32(&out, stored ? UInt32(block.count) : UInt32(compressedLength))
        appendBE32(&out, Lzop.adler32(1, block))
        if stored {
            out.append(contentsOf: block)
        } else {
            out.append(contentsOf: scratch[0..<Int(compressedLength)])
        }
    }
}
