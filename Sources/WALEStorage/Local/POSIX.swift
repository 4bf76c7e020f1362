#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CWALESupport
import WALECore

/// Thin, throwing wrappers over the system calls wal-e uses, with messages naming the path.
public enum POSIX {
    public static func errorText(_ e: Int32 = errno) -> String { String(cString: strerror(e)) }

    /// A WALEError for the current errno: `.notFound` for ENOENT and ENOTDIR (a component of the
    /// path is missing or not a directory), `.user` for EACCES, EPERM and EROFS (no retry changes
    /// them), else `.io`; a full file system or quota (ENOSPC, EDQUOT) is `.io` not to be retried
    /// (seconds of retries do not free space; PostgreSQL calls archive and restore commands again).
    public static func error(_ what: String, _ path: String, _ e: Int32 = errno) -> WALEError {
        let kind: WALEError.Kind = e == ENOENT || e == ENOTDIR ? .notFound : (e == EACCES || e == EPERM || e == EROFS ? .user : .io)
        let error = WALEError(kind, "could not \(what) \"\(path)\": \(errorText(e))")
        guard e == ENOSPC || e == EDQUOT else { return error }
        var full = error.exhaustingRetries()
        full.hint = "free space on the file system holding \(dirname(path)), then run the command again"
        return full
    }

    public static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0o666, what: String = "open") throws -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw error(what, path) }
        }
    }

    /// Reads up to `count` bytes (fewer only at end of file). The buffer is not zero-filled first:
    /// only the pages the kernel writes into are touched.
    public static func read(_ fd: Int32, count: Int, path: String) throws -> [UInt8] {
        try read(fd, count: count, at: nil, path: path)
    }

    /// Up to `count` bytes at `offset` (pread; where the file stands when nil); fewer only at the end.
    public static func read(_ fd: Int32, count: Int, at offset: off_t?, path: String) throws -> [UInt8] {
        var failure: Int32 = 0
        let buf = [UInt8](unsafeUninitializedCapacity: count) { p, initialized in
            var got = 0
            while got < count {
                let n = offset.map { Glibc.pread(fd, p.baseAddress! + got, count - got, $0 + off_t(got)) } ?? Glibc.read(fd, p.baseAddress! + got, count - got)
                if n == 0 { break }
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    break
                }
                got += n
            }
            initialized = got
        }
        if failure != 0 { throw error("read", path, failure) }
        return buf
    }

    public static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        try bytes.withUnsafeBytes { try writeAll(fd, $0, path: path) }
    }

    public static func writeAll(_ fd: Int32, _ p: UnsafeRawBufferPointer, path: String) throws {
        var done = 0
        while done < p.count {
            let n = Glibc.write(fd, p.baseAddress! + done, p.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw error("write", path)
            }
            done += n
        }
    }

    public static func fsync(_ fd: Int32, path: String) throws {
        if Glibc.fsync(fd) != 0 { throw error("fsync", path) }
    }

    /// fsyncs a directory so a rename or link inside it is durable.
    public static func fsyncDirectory(_ path: String) throws {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        if Glibc.fsync(fd) != 0 && errno != EINVAL { throw error("fsync directory", path) }
    }

    /// A file's user extended attributes (`user.` + name), by lower-case name: object metadata
    /// for the file store. `list` and `get` are flistxattr/fgetxattr or listxattr/getxattr. Empty
    /// where the file system keeps none; values above 4 KiB are skipped.
    static func userAttributes(list: (UnsafeMutablePointer<CChar>?, Int) -> Int, get: (String, UnsafeMutableRawPointer?, Int) -> Int) -> [String: String] {
        let size = list(nil, 0)
        guard size > 0 else { return [:] }
        var names = [CChar](repeating: 0, count: size)
        let got = names.withUnsafeMutableBufferPointer { list($0.baseAddress, size) }
        guard got > 0, got <= size else { return [:] }  // the list changed in between: none
        var out: [String: String] = [:]
        for raw in names[0..<got].split(separator: 0) {
            let name = String(decoding: raw.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard name.hasPrefix("user.") else { continue }
            let length = get(name, nil, 0)
            guard length >= 0, length <= 4096 else { continue }
            var value = [UInt8](repeating: 0, count: length)
            guard value.withUnsafeMutableBytes({ get(name, $0.baseAddress, length) }) == length else { continue }
            out[String(name.dropFirst(5)).lowercased()] = String(decoding: value, as: UTF8.self)
        }
        return out
    }

    public static func userAttributes(fd: Int32) -> [String: String] {
        userAttributes(list: { flistxattr(fd, $0, $1) }, get: { fgetxattr(fd, $0, $1, $2) })
    }

    public static func userAttributes(path: String) -> [String: String] {
        userAttributes(list: { listxattr(path, $0, $1) }, get: { getxattr(path, $0, $1, $2) })
    }

    /// Sets `attributes` as user extended attributes of the open file; false when the file system
    /// refused any (it keeps none: tmpfs before Linux 6.6, some network file systems).
    @discardableResult
    public static func setUserAttributes(fd: Int32, _ attributes: [String: String]) -> Bool {
        var ok = true
        for (k, v) in attributes.sorted(by: { $0.key < $1.key }) {
            let bytes = Array(v.utf8)
            if fsetxattr(fd, "user." + k, bytes, bytes.count, 0) != 0 { ok = false }
        }
        return ok
    }

    public static func stat(_ path: String) -> stat? {
        var st = Glibc.stat()
        return fstatat(AT_FDCWD, path, &st, 0) == 0 ? st : nil
    }

    public static func lstat(_ path: String) -> stat? {
        var st = Glibc.stat()
        return fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) == 0 ? st : nil
    }

    public static func isDirectory(_ path: String) -> Bool {
        guard let st = stat(path) else { return false }
        return st.st_mode & S_IFMT == S_IFDIR
    }

    /// `mkdir -p`. Existing directories are fine.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o777) throws {
        if isDirectory(path) { return }
        let parent = dirname(path)
        if parent != path && !parent.isEmpty { try makeDirectories(parent, mode: mode) }
        if mkdir(path, mode) != 0 && errno != EEXIST { throw error("create directory", path) }
    }

    /// Flushes the whole file system holding `path` (syncfs(2)).
    public static func syncFileSystem(_ path: String) throws {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        if wale_syncfs(fd) != 0 { throw error("sync the file system of", path) }
    }

    public static func rename(_ from: String, _ to: String) throws {
        if Glibc.rename(from, to) != 0 { throw error("rename to \"\(to)\"", from) }
    }

    /// Removes a file; a missing file is fine.
    public static func unlinkIfPresent(_ path: String) throws {
        if unlink(path) != 0 && errno != ENOENT { throw error("remove", path) }
    }

    /// Names in a directory, without `.` and `..`. Throws `.notFound` when it does not exist.
    public static func listDirectory(_ path: String) throws -> [String] {
        guard let d = opendir(path) else { throw error("list directory", path) }
        defer { closedir(d) }
        var names: [String] = []
        while let e = readdir(d) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { p in
                String(decoding: p.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public static func dirname(_ path: String) -> String {
        guard let i = path.lastIndex(of: "/") else { return "." }
        if i == path.startIndex { return "/" }
        return String(path[..<i])
    }

    /// The working directory ("." if it cannot be read).
    public static func currentDirectory() -> String {
        guard let p = getcwd(nil, 0) else { return "." }
        defer { free(p) }
        return String(cString: p)
    }

    public static func basename(_ path: String) -> String {
        guard let i = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: i)...])
    }

    public static func mtime(_ st: stat) -> Double {
        Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) * 1e-9  // as Python computes st_mtime
    }

    /// Seconds since the epoch.
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// Seconds on a clock that never goes back (for durations).
    public static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// The canonical absolute path (symlinks resolved), or nil if it does not exist.
    public static func realPath(_ p: String) -> String? {
        guard let r = Glibc.realpath(p, nil) else { return nil }
        defer { free(r) }
        return String(cString: r)
    }

    /// A small text file's contents (up to `limit` bytes), or nil if it cannot be read.
    public static func readSmallFile(_ path: String, limit: Int = 1 << 20) -> String? {
        guard !path.isEmpty, let fd = try? open(path, O_RDONLY) else { return nil }
        defer { close(fd) }
        // In 64 KiB reads up to `limit`: memory follows the file's size, not the limit.
        var bytes: [UInt8] = []
        while bytes.count < limit {
            guard let piece = try? read(fd, count: min(64 << 10, limit - bytes.count), path: path) else { return nil }
            if piece.isEmpty { break }
            bytes += piece
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A name unique to this process for temporary files.
    public static func uniqueSuffix() -> String {
        let r = UInt64.random(in: 0...UInt64.max)
        return "\(getpid()).\(String(r, radix: 36))"
    }
}
