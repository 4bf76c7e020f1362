#if canImport(Glibc)
import Glibc
#endif
import CWALESupport
import Testing
import WALECore
@testable import WALEStorage

/// backup-push opens the small files ahead of the one it reads and has the kernel read them into
/// the page cache; what it reads, and what happens to a file it cannot open, must not change.
@Suite struct OpenAheadTests {
    /// `count` files of distinct contents, evicted from the page cache.
    static func files(_ count: Int) throws -> [(path: String, data: [UInt8])] {
        let dir = scratchDirectory()
        return try (0..<count).map { i in
            let path = "\(dir)/f\(i)"
            let data = DirectWriteTests.pattern(8192 * (1 + i % 3), seed: UInt32(i) &+ 3)
            let fd = try POSIX.open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600, what: "create")
            try POSIX.writeAll(fd, data, path: path)
            fsync(fd)
            _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
            close(fd)
            return (path, data)
        }
    }

    static func contents(_ fd: Int32) throws -> [UInt8] {
        var out: [UInt8] = []
        while true {
            let piece = try POSIX.read(fd, count: 65_536, at: off_t(out.count), path: "fd")
            if piece.isEmpty { return out }
            out += piece
        }
    }

    /// Every chosen file comes back opened, holding its own bytes; the others (every third
    /// index here) come back nil; never more than `depth` descriptors are open at once.
    @Test func opensTheChosenFilesAheadAndNoMore() throws {
        let files = try Self.files(40)
        var ahead = OpenAhead(count: files.count, depth: 8) { i in i % 3 == 2 ? nil : files[i].path }
        for i in files.indices {
            let fd = ahead.take(i)
            #expect(ahead.held <= 7)
            guard let fd else {
                #expect(i % 3 == 2, "file \(i) should have been opened ahead")
                continue
            }
            #expect(i % 3 != 2)
            #expect(try Self.contents(fd) == files[i].data)
            close(fd)
        }
        #expect(ahead.held == 0)
    }

    /// Taking file 0 asks the kernel for the files after it: they are (soon) in the page cache.
    @Test func theFilesAheadAreReadIntoThePageCache() throws {
        let files = try Self.files(6)
        for f in files {
            let fd = try POSIX.open(f.path, O_RDONLY, what: "open")
            #expect(wale_cached_pages(fd, 0, Int(8192 * 3)) == 0, "the test needs \(f.path) evicted")
            close(fd)
        }
        var ahead = OpenAhead(count: files.count, depth: 6) { files[$0].path }
        let first = ahead.take(0)
        #expect(first != nil)
        if let first { close(first) }
        let deadline = POSIX.monotonic() + 5
        var cached = false
        while !cached && POSIX.monotonic() < deadline {
            let fd = try POSIX.open(files[5].path, O_RDONLY, what: "open")
            cached = wale_cached_pages(fd, 0, files[5].data.count) == files[5].data.count / 4096
            close(fd)
            if !cached { usleep(1000) }
        }
        #expect(cached)
        ahead.closeAll()
    }

    /// Whether file `i` came back opened (then closed).
    static func takeAndClose(_ ahead: inout OpenAhead, _ i: Int) -> Bool {
        guard let fd = ahead.take(i) else { return false }
        close(fd)
        return true
    }

    /// A file that cannot be opened ahead (gone, or a FIFO where a file was) comes back nil,
    /// so the reader opens it itself and reports it as it always did; files skipped by the reader
    /// and those left when it stops are closed.
    @Test func failuresAreLeftToTheReaderAndNothingLeaks() throws {
        let files = try Self.files(10)
        unlink(files[3].path)
        // A FIFO where file 6 was: opening it must not wait for a writer, nor hand it out.
        unlink(files[6].path)
        #expect(mkfifo(files[6].path, 0o600) == 0)
        var ahead = OpenAhead(count: files.count, depth: 4) { files[$0].path }
        #expect(Self.takeAndClose(&ahead, 2))
        #expect(ahead.held == 2)  // 4 and 5; 3 is gone
        #expect(!Self.takeAndClose(&ahead, 3))
        #expect(!Self.takeAndClose(&ahead, 6))
        // 4, 5, 7 and 8 skipped: those opened ahead are closed; 9 is the last file.
        #expect(Self.takeAndClose(&ahead, 9))
        #expect(ahead.held == 0)
        var left = OpenAhead(count: files.count, depth: 4) { files[$0].path }
        #expect(Self.takeAndClose(&left, 0))
        #expect(left.held == 2)  // 1 and 2; 3 is gone
        left.closeAll()
        #expect(left.held == 0)
    }
}
