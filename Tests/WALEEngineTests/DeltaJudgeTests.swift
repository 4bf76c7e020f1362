#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import WALECore
@testable import WALEEngine

/// backup-fetch --delta keeps the files already in place. Judged by checksum, the small ones are
/// read ahead; the verdicts must be those of judging each file alone.
@Suite struct DeltaJudgeTests {
    static func bytes(_ n: Int, seed: UInt8) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31) &+ seed } }

    @Test func theFilesInPlaceAndNoOthers() throws {
        let root = NSTemporaryDirectory() + "wale-delta-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: root + "/base/5", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var files: [ManifestEntry] = []
        var expected: [String] = []
        // 70 small files (more than the read-ahead window) and one of 3 MiB, most in place.
        for i in 0..<71 {
            let path = "base/5/\(16384 + i)"
            let data = Self.bytes(i == 70 ? 3 << 20 : 8192 * (1 + i % 4), seed: UInt8(i))
            files.append(ManifestEntry(path: path, size: Int64(data.count), mode: 0o600, checksum: FileChecksummer.checksum(data, .crc32c), algorithm: .crc32c))
            var onDisk = data
            switch i % 10 {
            case 3: onDisk[100] ^= 1  // same size, other content
            case 5: continue  // missing
            case 7:  // a FIFO where the file should be: judged not in place, never waited on
                #expect(mkfifo(root + "/" + path, 0o600) == 0)
                continue
            default: expected.append(path)
            }
            try Data(onDisk).write(to: URL(fileURLWithPath: root + "/" + path))
            chmod(root + "/" + path, 0o600)
        }
        let judge = DeltaJudge(root: root, trustMtimeBefore: nil)
        let kept = try judge.inPlace(files).map(\.path)
        #expect(kept == expected)
        // The same verdicts file by file, without reading ahead.
        var buffer: [UInt8] = []
        #expect(try files.filter { try judge.inPlace($0, buffer: &buffer) }.map(\.path) == expected)
    }
}
