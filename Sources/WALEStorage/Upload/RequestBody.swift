import CWALESupport
import NIOCore
#if canImport(Glibc)
import Glibc
#endif
import WALECore

/// What an upload request sends: a buffer in memory (`ByteBuffer`), a body spooled to a file
/// (`SpoolFile`), or several of them in a row (`JoinedBody`: GCS's multipart framing around
/// either). The HTTP core sends any of them in slices as the connection drains
/// (`HTTPCore.attach`); the stores' digests read them stretch by stretch.
protocol RequestBody: Sendable {
    var byteCount: Int { get }
    /// Calls `visit` with each stretch of the bytes, in order.
    func forEachStretch(_ visit: (UnsafeRawBufferPointer) throws -> Void) throws
    /// Up to `count` bytes from `offset` (fewer only at the end of a stretch), in a buffer of their
    /// own: never a view, since the HTTP client can keep the last slice it was given after the
    /// request is over, and a view would pin the whole body with it.
    func slice(at offset: Int, count: Int) throws -> ByteBuffer
}

extension ByteBuffer: RequestBody {
    var byteCount: Int { readableBytes }

    func forEachStretch(_ visit: (UnsafeRawBufferPointer) throws -> Void) throws {
        try withUnsafeReadableBytes { try visit($0) }
    }

    func slice(at offset: Int, count: Int) -> ByteBuffer {
        let n = Swift.min(count, readableBytes - offset)
        guard n > 0, let view = getSlice(at: readerIndex + offset, length: n) else { return ByteBuffer() }
        var copy = ByteBufferAllocator().buffer(capacity: n)
        copy.writeImmutableBuffer(view)
        return copy
    }
}

/// Bodies sent one after the other as one.
struct JoinedBody: RequestBody {
    let parts: [any RequestBody]
    var byteCount: Int { parts.reduce(0) { $0 + $1.byteCount } }

    func forEachStretch(_ visit: (UnsafeRawBufferPointer) throws -> Void) throws {
        for p in parts { try p.forEachStretch(visit) }
    }

    func slice(at offset: Int, count: Int) throws -> ByteBuffer {
        var start = 0
        for p in parts {
            if offset < start + p.byteCount { return try p.slice(at: offset - start, count: count) }
            start += p.byteCount
        }
        return ByteBuffer()
    }
}

/// An upload body written to an unnamed temporary file instead of upload memory: `O_TMPFILE` in
/// the given directory, so it never appears there and is gone when closed, whatever ends the
/// process. Filled once, then only read (`pread`), by any number of attempts.
final class SpoolFile: RequestBody, @unchecked Sendable {
    let fd: Int32
    let directory: String
    private(set) var byteCount = 0

    /// Nil when the directory cannot hold one (missing, not writable, a file system without
    /// `O_TMPFILE`), or when its file system has less than `keepingFree` bytes free: the WAL
    /// directory's disk filling up stops PostgreSQL, so a spool never takes its last gigabyte. The
    /// caller keeps the body in memory instead.
    init?(directory: String, keepingFree: UInt64 = 1 << 30) {
        var fs = statvfs()
        guard statvfs(directory, &fs) == 0, UInt64(fs.f_bavail).multipliedReportingOverflow(by: UInt64(fs.f_frsize)).partialValue >= keepingFree
        else { return nil }
        let fd = wale_open_tmpfile(directory)
        guard fd >= 0 else { return nil }
        self.fd = fd
        self.directory = directory
    }

    deinit { close(fd) }

    /// Appends `bytes` (page cache only: nothing is synced, the file never outlives the upload).
    func append(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = pwrite(fd, raw.baseAddress! + done, raw.count - done, off_t(byteCount + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw POSIX.error("write to a spool file in", directory)
                }
                done += n
            }
        }
        byteCount += bytes.count
    }

    func forEachStretch(_ visit: (UnsafeRawBufferPointer) throws -> Void) throws {
        var scratch = [UInt8](repeating: 0, count: 1 << 20)
        var offset = 0
        while offset < byteCount {
            let n = try scratch.withUnsafeMutableBytes { try read(into: $0, at: offset) }
            try scratch.withUnsafeBytes { try visit(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
            offset += n
        }
    }

    func slice(at offset: Int, count: Int) throws -> ByteBuffer {
        let n = min(count, byteCount - offset)
        guard n > 0 else { return ByteBuffer() }
        var out = ByteBufferAllocator().buffer(capacity: n)
        _ = try out.writeWithUnsafeMutableBytes(minimumWritableBytes: n) { raw in
            try read(into: UnsafeMutableRawBufferPointer(rebasing: raw[..<n]), at: offset)
        }
        return out
    }

    /// Fills `buffer` (or up to the end of the file) from `offset`; the count read, never 0 before the end.
    fileprivate func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws -> Int {
        let want = min(buffer.count, byteCount - offset)
        var done = 0
        while done < want {
            let n = pread(fd, buffer.baseAddress! + done, want - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw POSIX.error("read a spool file in", directory)
            }
            if n == 0 { throw WALEError(.io, "a spool file in \(directory) ended early") }
            done += n
        }
        return done
    }

    /// The spooled bytes as a source, from the start.
    func source() -> any ByteSource { SpoolSource(file: self) }
}

/// Reads a spool file back in 1 MiB chunks, each read straight into its array.
private final class SpoolSource: ByteSource, @unchecked Sendable {
    let file: SpoolFile
    var offset = 0
    init(file: SpoolFile) { self.file = file }

    func next() async throws -> [UInt8]? {
        let n = min(1 << 20, file.byteCount - offset)
        guard n > 0 else { return nil }
        let chunk = try [UInt8](unsafeUninitializedCapacity: n) { buffer, count in
            count = try file.read(into: UnsafeMutableRawBufferPointer(buffer), at: offset)
        }
        offset += chunk.count
        return chunk
    }
}
