import CLZ4
import WALECore

/// LZ4 frames (256 KiB linked blocks; content checksum and, so that no flipped bit in a block can
/// decode unnoticed, block checksums on); opt-in codec, key suffix `.lz4`.
public final class LZ4Encoder: ByteTransform {
    private var ctx: OpaquePointer?
    private var prefs = LZ4F_preferences_t()
    private var input = InputBuffer()
    private var begun = false
    private var finished = false
    private var ended = false
    static let piece = 256 * 1024

    public init(level: Int32 = 0) {
        var c: OpaquePointer?
        precondition(LZ4F_isError(LZ4F_createCompressionContext(&c, UInt32(LZ4F_VERSION))) == 0)
        ctx = c
        prefs.frameInfo.blockSizeID = LZ4F_max256KB
        prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled
        prefs.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled
        prefs.compressionLevel = level
    }
    deinit { LZ4F_freeCompressionContext(ctx) }

    public func push(_ chunk: [UInt8]) throws { input.append(chunk) }
    public func finish() throws { finished = true }

    public func pull(limit: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        if !begun {
            try call(into: &out, capacity: 32) { dst, cap in LZ4F_compressBegin(ctx, dst, cap, &prefs) }
            begun = true
        }
        while out.count < limit && input.count > 0 && (input.count >= Self.piece || finished) {
            let n = min(Self.piece, input.count)
            try input.withUnconsumed { src in
                try call(into: &out, capacity: LZ4F_compressBound(n, &prefs)) { dst, cap in
                    LZ4F_compressUpdate(ctx, dst, cap, src.baseAddress, n, nil)
                }
            }
            input.consume(n)
        }
        if finished && input.count == 0 && !ended {
            try call(into: &out, capacity: LZ4F_compressBound(0, &prefs)) { dst, cap in
                LZ4F_compressEnd(ctx, dst, cap, nil)
            }
            ended = true
        }
        return out
    }

    private func call(into out: inout [UInt8], capacity: Int, _ f: (UnsafeMutableRawPointer, Int) -> Int) throws {
        let base = out.count
        out.append(contentsOf: repeatElement(0, count: capacity))
        let rc = out.withUnsafeMutableBytes { f($0.baseAddress!.advanced(by: base), capacity) }
        if LZ4F_isError(rc) != 0 { throw WALEError(.internal, "lz4 compression failed: \(String(cString: LZ4F_getErrorName(rc)))") }
        out.removeSubrange((base + rc)...)
    }
}

/// Decodes LZ4 frames, verifying checksums; a truncated frame is an error.
public final class LZ4Decoder: ByteTransform {
    private var ctx: OpaquePointer?
    private var input = InputBuffer()
    private var finished = false
    private var midFrame = false
    private var sawInput = false

    public init() {
        var c: OpaquePointer?
        precondition(LZ4F_isError(LZ4F_createDecompressionContext(&c, UInt32(LZ4F_VERSION))) == 0)
        ctx = c
    }
    deinit { LZ4F_freeDecompressionContext(ctx) }

    public func push(_ chunk: [UInt8]) throws {
        input.append(chunk)
        sawInput = true
    }
    public func finish() throws { finished = true }

    public func pull(limit: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: limit)
        var produced = 0, consumed = 0
        try input.withUnconsumed { src in
            try out.withUnsafeMutableBytes { dst in
                while produced < limit && consumed <= src.count {
                    var dstSize = limit - produced
                    var srcSize = src.count - consumed
                    let rc = LZ4F_decompress(
                        ctx, dst.baseAddress!.advanced(by: produced), &dstSize,
                        src.baseAddress.map { $0.advanced(by: consumed) }, &srcSize, nil)
                    if LZ4F_isError(rc) != 0 {
                        throw WALEError(.corrupt, "lz4 stream is corrupt: \(String(cString: LZ4F_getErrorName(rc)))")
                    }
                    if dstSize == 0 && srcSize == 0 { break }
                    midFrame = rc != 0
                    produced += dstSize
                    consumed += srcSize
                }
            }
        }
        input.consume(consumed)
        out.removeSubrange(produced...)
        if out.isEmpty && finished && (midFrame || !sawInput || input.count > 0) {
            throw WALEError(.corrupt, "lz4 stream is truncated")
        }
        return out
    }
}
