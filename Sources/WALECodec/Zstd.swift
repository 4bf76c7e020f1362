import CZstd
import WALECore

/// zstd frames with the content checksum on (opt-in codec, key suffix `.zst`).
public final class ZstdEncoder: ByteTransform {
    private let ctx: OpaquePointer
    private var input = InputBuffer()
    private var finished = false
    private var ended = false

    public init(level: Int32 = 3) {
        ctx = ZSTD_createCCtx()!
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_checksumFlag, 1)
    }
    deinit { ZSTD_freeCCtx(ctx) }

    public func push(_ chunk: [UInt8]) throws { input.append(chunk) }
    public func finish() throws { finished = true }

    public func pull(limit: Int) throws -> [UInt8] {
        if ended || (input.count == 0 && !finished) { return [] }
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
        return out
    }
}

/// Decodes one or more zstd frames, verifying their checksums; truncation is an error.
public final class ZstdDecoder: ByteTransform {
    private let ctx: OpaquePointer
    private var input = InputBuffer()
    private var finished = false
    private var midFrame = false
    private var sawInput = false

    public init() { ctx = ZSTD_createDCtx()! }
    deinit { ZSTD_freeDCtx(ctx) }

    public func push(_ chunk: [UInt8]) throws {
        input.append(chunk)
        sawInput = true
    }
    public func finish() throws { finished = true }

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
