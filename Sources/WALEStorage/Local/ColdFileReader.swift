import CWALESupport
#if canImport(Glibc)
import Glibc
#endif

/// Sequential reads of one local file that go around the page cache (O_DIRECT, into one reused
/// page-aligned buffer) wherever the cache holds none of the next window, and through it wherever
/// it holds any: data PostgreSQL has cached, dirty pages above all, is read from memory as usual
/// (a direct read would first write dirty pages back), while the cold bulk of a cluster lands in
/// memory this process has already touched. On the machines this runs on, the first touch of a
/// page-cache page the disk filled some time before costs a fault in the hypervisor (see
/// docs/design.md, "Reads around the page cache"): an S3 backup-push, whose reads wait for the
/// uploads, spent half its CPU copying out of the page cache.
///
/// A file system that refuses direct I/O (EINVAL, when it is switched on or at a read) is read
/// through the page cache from then on. The caller owns the descriptor.
public struct ColdFileReader {
    public static let alignment = 4096
    /// The window judged and read at once.
    public static let window = 1 << 20
    private let fd: Int32
    private let path: String
    private let buffer: UnsafeMutableRawPointer
    /// The file's bytes [bufferStart, bufferStart + bufferCount) are in the buffer.
    private var bufferStart: Int64 = 0
    private var bufferCount = 0
    /// The next byte to hand out.
    public private(set) var position: Int64 = 0
    /// A direct read met the end of the file: nothing lies past the buffer.
    private var ended = false
    private var directOn = false
    /// Every read goes through the page cache from here on: the file system refused direct I/O,
    /// or the file is smaller than a window.
    private var throughCache = false
    private var probed = false
    /// Bytes read around the page cache (for tests and logs).
    public private(set) var directBytes: Int64 = 0

    /// `buffer`: `window` bytes aligned to `alignment`, reused from file to file. `size`: the
    /// file's expected size; one smaller than a window is read through the page cache without
    /// asking (the cost of a cold copy follows the bytes, the system calls that judge a window
    /// and switch the descriptor follow the files: a million small files would pay them a million
    /// times for little).
    public init(fd: Int32, path: String, buffer: UnsafeMutableRawPointer, size: Int64 = .max) {
        self.fd = fd
        self.path = path
        self.buffer = buffer
        if size < Int64(Self.window) { (probed, throughCache) = (true, true) }
    }

    public static func allocateBuffer() -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer.allocate(byteCount: window, alignment: alignment)
    }

    /// Appends up to `count` bytes from where the last read ended to `out`; fewer only at the end
    /// of the file. Returns how many.
    @discardableResult
    public mutating func read(count: Int, appendingTo out: inout [UInt8]) throws -> Int {
        if !probed { probe() }
        if !inBuffer && ended { return 0 }
        if !inBuffer, !throughCache, fill(), !inBuffer { return 0 }
        if inBuffer {
            let from = Int(position - bufferStart)
            let n = min(count, bufferCount - from)
            out.append(contentsOf: UnsafeRawBufferPointer(start: buffer + from, count: n))
            position += Int64(n)
            return n
        }
        if directOn { setDirect(false) }
        // Through the cache up to the end of this window at most: the next one is judged anew.
        let windowEnd = (position / Int64(Self.window) + 1) * Int64(Self.window)
        let bytes = try POSIX.read(fd, count: min(count, Int(windowEnd - position)), at: off_t(position), path: path)
        out += bytes
        position += Int64(bytes.count)
        return bytes.count
    }

    private var inBuffer: Bool { position >= bufferStart && position < bufferStart + Int64(bufferCount) }

    /// Whether the file system takes direct reads. When it does, the kernel's readahead is turned
    /// off for this descriptor: it would fill the cache ahead of a window read through it (one
    /// partly cached), and every later window would then look cached; the direct windows are the
    /// readahead now.
    private mutating func probe() {
        probed = true
        guard wale_set_direct(fd, 1) == 0 else {
            throughCache = true
            return
        }
        directOn = true
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_RANDOM))
    }

    /// Reads the window holding `position` (windows are `window` bytes from the file's start)
    /// directly when the page cache holds none of it; false when it does (or the file system
    /// refuses), to read through the cache instead.
    private mutating func fill() -> Bool {
        let start = position / Int64(Self.window) * Int64(Self.window)
        guard wale_cached_pages(fd, start, Self.window) == 0 else { return false }
        if !directOn { setDirect(true) }
        var got = 0
        while got < Self.window {
            let n = pread(fd, buffer + got, Self.window - got, off_t(start) + off_t(got))
            if n > 0 {
                got += n
                if got % Self.alignment != 0 { break }  // the end of the file
                continue
            }
            if n == 0 { break }
            if errno == EINTR { continue }
            // EINVAL: this file system does no direct I/O after all; anything else is reported
            // by the buffered read that follows.
            if errno == EINVAL {
                throughCache = true
                _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_NORMAL))
            }
            setDirect(false)
            return false
        }
        bufferStart = start
        bufferCount = got
        ended = got < Self.window
        directBytes += Int64(got)
        return true
    }

    private mutating func setDirect(_ on: Bool) {
        if wale_set_direct(fd, on ? 1 : 0) == 0 { directOn = on }
    }
}
