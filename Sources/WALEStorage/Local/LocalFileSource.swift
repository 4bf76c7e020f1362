import CWALESupport
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
    /// that would add disk writes nobody waits for).
    public init(path: String, mode: mode_t = 0o600, temporaryPrefix: String = ".wal-e-tmp.", writeBehind: Bool = false) throws {
        self.path = path
        self.writeBehindEnabled = writeBehind
        let dir = POSIX.dirname(path)
        temporaryPath = dir + "/" + temporaryPrefix + POSIX.basename(path) + "." + POSIX.uniqueSuffix()
        fd = try POSIX.open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL, mode, what: "create")
    }

    deinit { abort() }

    private var writeBehind = WriteBehind()
    private let writeBehindEnabled: Bool

    public func write(_ bytes: [UInt8]) throws {
        try POSIX.writeAll(fd, bytes, path: temporaryPath)
        bytesWritten += Int64(bytes.count)
        if writeBehindEnabled { writeBehind.wrote(fd: fd, upTo: bytesWritten) }
    }

    /// Copies a whole source into the file.
    public func write(from source: any ByteSource) async throws {
        while let c = try await source.next() { try write(c) }
    }

    /// Closes the file (after fsync when `durable`) and leaves it at its temporary name.
    public func close(durable: Bool) throws {
        guard fd >= 0 else { return }
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
