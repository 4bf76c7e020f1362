import CZstd
import WALECore

/// The skippable frame that ends our zstd objects: the XXH3-128 of every byte before it. zstd's
/// own content checksum covers the decoded data only, and different frame bytes can decode to the
/// same data (a flipped bit in the frame header's flags, or in an offset into a run of zeros):
/// with this, any flipped bit of a stored object is noticed (verify promises it). zstd (and any
/// reader of the format) skips such a frame; objects written before it existed have none.
enum ZstdDigestFrame {
    static let magic: [UInt8] = [0x5E, 0x2A, 0x4D, 0x18]  // 0x184D2A5E, little-endian: skippable frame
    static let tag = Array("WALE".utf8)
    static let length = 8 + 4 + 16

    static func frame(_ digest: [UInt8]) -> [UInt8] { magic + [20, 0, 0, 0] + tag + digest }
}

/// zstd frames with the content checksum on (opt-in codec, key suffix `.zst`), then the digest frame.
public final class ZstdEncoder: ByteTransform {
    private let ctx: OpaquePointer
    private var input = InputBuffer()
    private var finished = false
    private var ended = false
    private var trailerDone = false
    private let hasher = XXH3Hasher()

    public init(level: Int32 = 3) {
        ctx = ZSTD_createCCtx()!
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_checksumFlag, 1)
    }
    deinit { ZSTD_freeCCtx(ctx) }

    public func push(_ chunk: [UInt8]) throws { input.append(chunk) }
    public func finish() throws { finished = true }

    public func pull(limit: Int) throws -> [UInt8] {
        if ended {
            if trailerDone { return [] }
            trailerDone = true
            return ZstdDigestFrame.frame(hasher.finalizeBytes())
        }
        if input.count == 0 && !finished { return [] }
        var out = [UInt8](repeating: 0, count: max(limit, Int(ZSTD_CStreamOutSize())))
        var produced = 0, consumed = 0
        try input.withUnconsumed { src in
            var inBuf = ZSTD_inBuffer(src: src.baseAddress, size: src.count, pos: 0)
            try out.withUnsafeMutableBytes { dst in
                var outBuf = ZSTD_outBuffer(dst: dst.baseAddress, size: dst.count, pos: 0)
                let rc = ZSTD_compressStream2(ctx, &outBuf, &inBuf, finished ? ZSTD_e_end : ZSTD_e_continue)
                if ZSTD_isError(rc) != 0 { throw zstdError(rc, "compress") }
                if finished && rc == 0 && inBuf.pos == inBuf.size { ended = true }
                produced = outBuf.pos
            }
            consumed = inBuf.pos
        }
        input.consume(consumed)
        out.removeSubrange(produced...)
        hasher.update(out)
        return out
    }
}

/// Decodes one or more zstd frames, verifying their checksums and our digest frame when the
/// object ends with one; truncation is an error.
public final class ZstdDecoder: ByteTransform {
    private let ctx: OpaquePointer
    private var input = InputBuffer()
    private var finished = false
    private var midFrame = false
    private var sawInput = false
    private let hasher = XXH3Hasher()
    /// The input's last bytes, not hashed yet: they may be the digest frame.
    private var tail: [UInt8] = []

    public init() { ctx = ZSTD_createDCtx()! }
    deinit { ZSTD_freeDCtx(ctx) }

    public func push(_ chunk: [UInt8]) throws {
        input.append(chunk)
        sawInput = true
        let keep = ZstdDigestFrame.length
        if chunk.count >= keep {
            hasher.update(tail)
            chunk.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[..<(chunk.count - keep)])) }
            tail = Array(chunk.suffix(keep))
        } else {
            tail += chunk
            if tail.count > keep {
                hasher.update(Array(tail.prefix(tail.count - keep)))
                tail.removeFirst(tail.count - keep)
            }
        }
    }

    public func finish() throws {
        finished = true
        // Ours (our magic, our length): the digest must match. Anything else: an object written
        // before the digest frame existed, whose last frame zstd itself checks.
        guard tail.count == ZstdDigestFrame.length, Array(tail.prefix(4)) == ZstdDigestFrame.magic else { return }
        guard Array(tail[4..<12]) == [20, 0, 0, 0] + ZstdDigestFrame.tag, Array(tail.suffix(16)) == hasher.finalizeBytes() else {
            throw WALEError(.corrupt, "zstd object does not match its digest frame (a damaged byte)")
        }
    }

    public func pull(limit: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: limit)
        var produced = 0, consumed = 0
        try input.withUnconsumed { src in
            var inBuf = ZSTD_inBuffer(src: src.baseAddress, size: src.count, pos: 0)
            try out.withUnsafeMutableBytes { dst in
                var outBuf = ZSTD_outBuffer(dst: dst.baseAddress, size: dst.count, pos: 0)
                while outBuf.pos < outBuf.size {
                    let before = (inBuf.pos, outBuf.pos)
                    let rc = ZSTD_decompressStream(ctx, &outBuf, &inBuf)
                    if ZSTD_isError(rc) != 0 { throw zstdError(rc, "decompress") }
                    if inBuf.pos == before.0 && outBuf.pos == before.1 { break }
                    midFrame = rc != 0
                }
                produced = outBuf.pos
            }
            consumed = inBuf.pos
        }
        input.consume(consumed)
        out.removeSubrange(produced...)
        if out.isEmpty && finished && (midFrame || !sawInput || input.count > 0) {
            throw WALEError(.corrupt, "zstd stream is truncated")
        }
        return out
    }
}

func zstdError(_ rc: Int, _ what: String) -> WALEError {
    WALEError(.corrupt, "zstd \(what) failed: \(String(cString: ZSTD_getErrorName(rc)))")
}
