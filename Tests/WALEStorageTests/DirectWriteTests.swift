#if canImport(Glibc)
import Glibc
#endif
import CWALESupport
import Testing
import WALECore
@testable import WALEStorage

/// Archived objects are written around the page cache (O_DIRECT) through an aligned, double
/// buffered staging area; whatever the sizes, the file must hold exactly the bytes written.
@Suite struct DirectWriteTests {
    static func pattern(_ n: Int, seed: UInt32) -> [UInt8] {
        var x = seed | 1
        return (0..<n).map { _ in
            x ^= x << 13; x ^= x >> 17; x ^= x << 5
            return UInt8(truncatingIfNeeded: x)
        }
    }

    @Test(arguments: [0, 1, 4095, 4096, 4097, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 123_457])
    func sizesRoundTrip(size: Int) async throws {
        let dir = scratchDirectory()
        let data = Self.pattern(size, seed: UInt32(truncatingIfNeeded: size))
        let writer = try AtomicFileWriter(path: dir + "/obj", writeBehind: true, direct: true)
        #expect(writer.isDirect)  // ext4 under /tmp takes O_DIRECT
        // Odd chunk sizes: the staging buffer fills across chunk boundaries.
        var i = 0
        while i < data.count {
            let n = min(100_003, data.count - i)
            try writer.write(Array(data[i..<(i + n)]))
            i += n
        }
        try writer.commit(durable: true)
        #expect(writer.bytesWritten == Int64(size))
        let back = try await LocalFileSource(path: dir + "/obj").collect()
        #expect(back.count == size)
        #expect(back == data)
    }

    /// The file store writes durable objects directly; a non-durable write goes through the
    /// page cache as before. Both read back the same.
    @Test func fileStoreDurableAndNot() async throws {
        let root = scratchDirectory()
        let store = FileStore(root: root)
        let data = Self.pattern(2_500_000, seed: 7)
        var durable = WriteOptions(ifAbsent: true)
        durable.durable = true
        var quick = WriteOptions()
        quick.durable = false
        #expect(try await store.write("a", from: BytesSource(data), options: durable) == .created)
        #expect(try await store.write("b", from: BytesSource(data), options: quick) == .created)
        #expect(try await store.read("a") { try await $0.collect() } == data)
        #expect(try await store.read("b") { try await $0.collect() } == data)
        #expect(try POSIX.listDirectory(root).sorted() == ["a", "b"])
    }

    /// A direct write the kernel refuses (EINVAL: here a buffer address that is not aligned)
    /// falls back to the page cache for the rest of the file, losing nothing.
    @Test func refusedDirectWriteFallsBack() throws {
        let path = scratchDirectory() + "/f"
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        #expect(fd >= 0)
        defer { close(fd) }
        #expect(wale_set_direct(fd, 1) == 0)
        let n = 3 * DirectStaging.alignment
        let raw = UnsafeMutableRawPointer.allocate(byteCount: n + 1, alignment: DirectStaging.alignment)
        defer { raw.deallocate() }
        let data = Self.pattern(n, seed: 3)
        data.withUnsafeBytes { (raw + 1).copyMemory(from: $0.baseAddress!, byteCount: n) }
        #expect(DirectStaging.write(fd, raw + 1, n) == 0)
        var st = stat()
        #expect(fstat(fd, &st) == 0 && st.st_size == n)
        #expect(fcntl(fd, F_GETFL) & 0o40000 == 0)  // O_DIRECT is off from then on
        var back = [UInt8](repeating: 0, count: n)
        let rfd = open(path, O_RDONLY)
        defer { close(rfd) }
        #expect(read(rfd, &back, n) == n)
        #expect(back == data)
    }

    /// A write that fails on the writer thread (here: a closed descriptor) is reported by a
    /// later hand-off or by the end of the file, never lost.
    @Test func writerThreadErrorsSurface() throws {
        let staging = DirectStaging()
        staging.filled = DirectStaging.capacity
        // Fails on the writer thread; the hand-off itself reports it only if the writer got
        // there first (a race), so either way is right here. finish() must report it always.
        _ = try? staging.submit(fd: -1, path: "/nowhere")
        staging.filled = 10
        #expect(throws: WALEError.self) { try staging.finish(fd: -1, path: "/nowhere") }

        let again = DirectStaging()
        var thrown = false
        for _ in 0..<(DirectStaging.ring + 2) where !thrown {
            again.filled = DirectStaging.capacity
            do { try again.submit(fd: -1, path: "/nowhere") } catch { thrown = true }
        }
        #expect(thrown)
        again.waitForWrites()
    }
}
