#if canImport(Glibc)
import Glibc
#endif
import Testing
import WALECore
@testable import WALEStorage

/// backup-push reads a cluster's files around the page cache where the cache holds none of the
/// next window, and through it where it holds any; either way the bytes must be the file's.
@Suite struct ColdFileReaderTests {
    /// Writes `size` pattern bytes, durable; `evict`: then drops them from the page cache.
    static func file(_ size: Int, evict: Bool) throws -> (path: String, data: [UInt8]) {
        let path = scratchDirectory() + "/f"
        let data = DirectWriteTests.pattern(size, seed: UInt32(truncatingIfNeeded: size) &+ 11)
        let fd = try POSIX.open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600, what: "create")
        try POSIX.writeAll(fd, data, path: path)
        fsync(fd)
        if evict { _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED)) }
        close(fd)
        return (path, data)
    }

    /// Reads the whole file in pieces of the sizes `counts` cycles through.
    static func readAll(_ path: String, counts: [Int], size: Int64 = .max) throws -> (bytes: [UInt8], direct: Int64) {
        let fd = try POSIX.open(path, O_RDONLY, what: "open")
        defer { close(fd) }
        let buffer = ColdFileReader.allocateBuffer()
        defer { buffer.deallocate() }
        var reader = ColdFileReader(fd: fd, path: path, buffer: buffer, size: size)
        var out: [UInt8] = []
        var i = 0
        while try reader.read(count: counts[i % counts.count], appendingTo: &out) > 0 { i += 1 }
        #expect(try reader.read(count: 1, appendingTo: &out) == 0)  // stays at the end
        return (out, reader.directBytes)
    }

    @Test(arguments: [0, 1, 4095, 4096, 4097, ColdFileReader.window - 1, ColdFileReader.window, 3 * ColdFileReader.window + 123_457])
    func coldFileReadsAroundTheCache(size: Int) throws {
        let (path, data) = try Self.file(size, evict: true)
        let (back, direct) = try Self.readAll(path, counts: [100_003, 512, 262_144, 7])
        #expect(back == data)
        #expect(direct == Int64(size))  // ext4 under /tmp takes O_DIRECT; every byte came that way
    }

    /// A file smaller than a window is read through the cache, cold or not (no system calls to
    /// judge it); one of a window or more is judged.
    @Test func smallFilesAreNotJudged() throws {
        let small = try Self.file(ColdFileReader.window - 1, evict: true)
        let (back, direct) = try Self.readAll(small.path, counts: [4096], size: Int64(small.data.count))
        #expect(back == small.data)
        #expect(direct == 0)
        let large = try Self.file(ColdFileReader.window, evict: true)
        let (back2, direct2) = try Self.readAll(large.path, counts: [4096], size: Int64(large.data.count))
        #expect(back2 == large.data)
        #expect(direct2 == Int64(ColdFileReader.window))
    }

    @Test func cachedFileReadsThroughTheCache() throws {
        let (path, data) = try Self.file(2 * ColdFileReader.window + 999, evict: false)
        let (back, direct) = try Self.readAll(path, counts: [65_536, 1_000_001])
        #expect(back == data)
        #expect(direct == 0)
    }

    /// A window holding any cached page is read through the cache; the next cold one directly,
    /// from the aligned offset below where the cached read stopped.
    @Test func partlyCachedFileMixesBoth() throws {
        let (path, data) = try Self.file(3 * ColdFileReader.window + 5000, evict: true)
        let fd = try POSIX.open(path, O_RDONLY, what: "open")
        _ = try POSIX.read(fd, count: 8192, at: off_t(ColdFileReader.window / 2), path: path)  // caches part of window 1
        close(fd)
        let (back, direct) = try Self.readAll(path, counts: [300_007])
        #expect(back == data)
        #expect(direct > 0 && direct < Int64(data.count))
    }
}
