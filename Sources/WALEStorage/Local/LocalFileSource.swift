import CWALESupport
import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import WALECore

/// Reads a local file as a `ByteSource` in chunks of `chunkSize` bytes.
public final class LocalFileSource: ByteSource {
    public static let defaultChunkSize = 256 << 10
    public let path: String
    private var fd: Int32
    private let chunkSize: Int
    /// Bytes handed out so far.
    public private(set) var bytesRead: Int64 = 0

    /// Opens `path` for reading; a missing file throws `.notFound`.
    public init(path: String, chunkSize: Int = LocalFileSource.defaultChunkSize) throws {
        self.path = path
        self.chunkSize = chunkSize
        fd = try POSIX.open(path, O_RDONLY)
    }

    /// Wraps an already open descriptor (the source takes ownership).
    public init(fd: Int32, path: String, chunkSize: Int = LocalFileSource.defaultChunkSize) {
        self.fd = fd
        self.path = path
        self.chunkSize = chunkSize
    }

    deinit { if fd >= 0 { close(fd) } }

    /// The file's user extended attributes (see `POSIX.userAttributes`); empty once read to the end.
    public func userAttributes() -> [String: String] { fd >= 0 ? POSIX.userAttributes(fd: fd) : [:] }

    public func next() async throws -> [UInt8]? {
        guard fd >= 0 else { return nil }
        let chunk = try POSIX.read(fd, count: chunkSize, path: path)
        if chunk.isEmpty {
            close(fd)
            fd = -1
            return nil
        }
        bytesRead += Int64(chunk.count)
        return chunk
    }
}

/// Writes a file under a temporary name in the target's directory and makes it appear under its
/// real name only when complete (rename), so no reader ever sees a partial file.
public final class AtomicFileWriter {
    public let path: String
    public let temporaryPath: String
    private var fd: Int32
    private var committed = false
    public private(set) var bytesWritten: Int64 = 0

    /// `mode` is the final file's permission bits (before umask). `writeBehind`: the file will be
    /// fsynced, so start writing it back as it grows (never for files that need no durability:
    /// that would add disk writes nobody waits for). `direct`: nobody will read the file soon (an
    /// archived object), so write it around the page cache (O_DIRECT) where the file system
    /// allows; elsewhere the file is written normally.
    public init(
        path: String, mode: mode_t = 0o600, temporaryPrefix: String = ".wal-e-tmp.", writeBehind: Bool = false, direct: Bool = false
    ) throws {
        self.path = path
        self.writeBehindEnabled = writeBehind
        let dir = POSIX.dirname(path)
        temporaryPath = dir + "/" + Self.temporaryLead(of: path, temporaryPrefix) + POSIX.uniqueSuffix()
        fd = try POSIX.open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL, mode, what: "create")
        if direct && wale_set_direct(fd, 1) == 0 { staging = DirectStaging() }
    }

    deinit { abort() }

    /// Removes the temporaries of earlier writers of `path` (same prefix and name) whose process
    /// is gone: one killed with -9, or ended by SIGQUIT (PostgreSQL's immediate shutdown ends
    /// restore_command so, mid-download) left its partial file behind, up to a segment each,
    /// in pg_wal. A live writer's file (its pid answers) is left alone.
    public static func removeDeadTemporaries(of path: String, temporaryPrefix: String = ".wal-e-tmp.") {
        let dir = POSIX.dirname(path)
        let lead = temporaryLead(of: path, temporaryPrefix)
        guard let names = try? POSIX.listDirectory(dir) else { return }
        for name in names where name.hasPrefix(lead) {
            // <lead><pid>.<random>
            guard let pid = Int32(name.dropFirst(lead.count).prefix { $0 != "." }), pid > 0, pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink(dir + "/" + name) }
        }
    }

    /// A temporary's name up to its unique suffix (`<pid>.<random>`, POSIX.uniqueSuffix).
    private static func temporaryLead(of path: String, _ temporaryPrefix: String) -> String {
        temporaryPrefix + POSIX.basename(path) + "."
    }

    private var writeBehind = WriteBehind()
    private let writeBehindEnabled: Bool
    /// Set while the file is written with O_DIRECT: bytes gather here until a whole aligned
    /// buffer can go to the disk.
    private var staging: DirectStaging?

    /// Whether the file is being written around the page cache (for tests).
    public var isDirect: Bool { staging != nil }

    public func write(_ bytes: [UInt8]) throws {
        if let staging {
            try bytes.withUnsafeBytes { try staging.append($0, fd: fd, path: temporaryPath) }
        } else {
            try POSIX.writeAll(fd, bytes, path: temporaryPath)
            if writeBehindEnabled { writeBehind.wrote(fd: fd, upTo: bytesWritten + Int64(bytes.count)) }
        }
        bytesWritten += Int64(bytes.count)
    }

    /// Writes what is still staged (the unaligned tail through the page cache) and waits for
    /// the writes in flight.
    private func finishStaging() throws {
        guard let s = staging else { return }
        staging = nil
        try s.finish(fd: fd, path: temporaryPath)
    }

    /// Sets the file's user extended attributes (before it is committed, so they appear with it);
    /// false when the file system keeps none.
    @discardableResult
    public func setUserAttributes(_ attributes: [String: String]) -> Bool {
        fd >= 0 && POSIX.setUserAttributes(fd: fd, attributes)
    }

    /// Copies a whole source into the file.
    public func write(from source: any ByteSource) async throws {
        while let c = try await source.next() { try write(c) }
    }

    /// Closes the file (after fsync when `durable`) and leaves it at its temporary name.
    public func close(durable: Bool) throws {
        guard fd >= 0 else { return }
        try finishStaging()
        if durable { try POSIX.fsync(fd, path: temporaryPath) }
        let rc = Glibc.close(fd)
        fd = -1
        if rc != 0 { throw POSIX.error("close", temporaryPath) }
    }

    /// Makes the file visible under its real name, replacing anything there.
    public func commit(durable: Bool) throws {
        try close(durable: durable)
        try POSIX.rename(temporaryPath, path)
        committed = true
        if durable { try POSIX.fsyncDirectory(POSIX.dirname(path)) }
    }

    /// Makes the file visible under its real name only if nothing has that name (link(2) is atomic).
    /// Returns false, leaving the existing file alone, when the name is taken.
    public func commitIfAbsent(durable: Bool) throws -> Bool {
        try close(durable: durable)
        if link(temporaryPath, path) != 0 {
            let e = errno
            if e == EEXIST { return false }
            if e == EPERM || e == ENOTSUP || e == EXDEV || e == EMLINK {
                // File systems without hard links: check, then rename (not atomic against a racing writer).
                if POSIX.lstat(path) != nil { return false }
                try POSIX.rename(temporaryPath, path)
                committed = true
                if durable { try POSIX.fsyncDirectory(POSIX.dirname(path)) }
                return true
            }
            throw POSIX.error("link to \"\(path)\"", temporaryPath, e)
        }
        committed = true
        unlink(temporaryPath)
        if durable { try POSIX.fsyncDirectory(POSIX.dirname(path)) }
        return true
    }

    /// Discards the temporary file (no-op after a commit).
    public func abort() {
        staging?.waitForWrites()
        staging = nil
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
        if !committed {
            unlink(temporaryPath)
            committed = true
        }
    }
}

/// Starts the kernel writing a file's data back every few MiB while more is being produced, so
/// the final fsync (or syncfs) waits for the tail only. A hint: errors are ignored, durability
/// still comes from fsync.
public struct WriteBehind {
    public static let step: Int64 = 4 << 20
    private var started: Int64 = 0
    public init() {}
    public mutating func wrote(fd: Int32, upTo end: Int64) {
        guard end - started >= Self.step else { return }
        _ = wale_write_behind(fd, started, end - started)
        started = end
    }
}

/// Direct (O_DIRECT) writes of one file through a ring of page-aligned buffers: the producer
/// fills one while a writer thread sends the others to the disk in order, so compression and the
/// disk overlap as they did with write-back through the page cache, and a slow write (a busy disk
/// during a backup) is absorbed by the buffers queued behind it instead of stalling the producer.
/// Offsets, lengths and addresses of direct writes must be multiples of the block size; the
/// unaligned tail of the file is written through the page cache at the end. A file system that
/// refuses a direct write (EINVAL) gets the rest of the file written normally.
public final class DirectStaging: @unchecked Sendable {
    static let alignment = 4096
    static let capacity = 512 << 10
    static let ring = 4
    private let buffers = (0..<DirectStaging.ring).map { _ in
        UnsafeMutableRawPointer.allocate(byteCount: DirectStaging.capacity, alignment: DirectStaging.alignment)
    }
    private var current = 0
    var filled = 0
    var base: UnsafeMutableRawPointer { buffers[current] }
    /// Writes run in submission order on this queue.
    private let writer = DispatchQueue(label: "wale.direct-write")
    /// Buffers neither being filled nor queued: the producer takes one before it refills.
    private let free = DispatchSemaphore(value: DirectStaging.ring - 1)
    /// errno of the first failed write (set on the writer queue).
    private let failure = Atomic<Int32>(0)

    public init() {}

    deinit { buffers.forEach { $0.deallocate() } }

    /// Copies `bytes` into the buffers, queueing each one filled for writing to `fd`.
    public func append(_ bytes: UnsafeRawBufferPointer, fd: Int32, path: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = min(Self.capacity - filled, bytes.count - offset)
            (base + filled).copyMemory(from: bytes.baseAddress! + offset, byteCount: n)
            filled += n
            offset += n
            if filled == Self.capacity { try submit(fd: fd, path: path) }
        }
    }

    /// Queues the full buffer for writing and moves to the next free one.
    func submit(fd: Int32, path: String) throws {
        nonisolated(unsafe) let buffer = buffers[current]
        let count = filled
        writer.async { [self] in
            if failure.load(ordering: .acquiring) == 0 { failure.store(Self.write(fd, buffer, count), ordering: .releasing) }
            free.signal()
        }
        // The writes finish in order, so once one more buffer is free it is the next in the ring.
        free.wait()
        current = (current + 1) % Self.ring
        filled = 0
        // A failure is reported at most ring - 1 hand-offs after its write, or by finish().
        let e = failure.load(ordering: .acquiring)
        if e != 0 { throw POSIX.error("write", path, e) }
    }

    /// Waits for the writes queued, then writes the staged rest: its aligned part directly, the
    /// tail through the page cache.
    public func finish(fd: Int32, path: String) throws {
        waitForWrites()
        let failed = failure.load(ordering: .acquiring)
        if failed != 0 { throw POSIX.error("write", path, failed) }
        let e = Self.write(fd, base, filled)
        if e != 0 { throw POSIX.error("write", path, e) }
        filled = 0
    }

    public func waitForWrites() { writer.sync {} }

    /// Writes `count` bytes at the file's offset, aligned blocks directly, the rest (or all of it
    /// once the file system refused direct I/O) through the page cache; 0 or an errno.
    static func write(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ count: Int) -> Int32 {
        let aligned = count & ~(alignment - 1)
        var done = 0
        var direct = true
        while done < aligned && direct {
            let n = Glibc.write(fd, p + done, aligned - done)
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EINVAL { direct = false; break }
                return errno
            }
            done += n
            if done % alignment != 0 { direct = false }  // a short write left the offset unaligned
        }
        guard done < count else { return 0 }
        if wale_set_direct(fd, 0) != 0 { return errno }
        while done < count {
            let n = Glibc.write(fd, p + done, count - done)
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            done += n
        }
        // Later aligned buffers may go directly again, unless direct I/O itself was refused.
        if direct { _ = wale_set_direct(fd, 1) }
        return 0
    }
}
