import CWALESupport
import Crypto
import WALECodec
import WALECore

func sha256(_ data: [UInt8]) -> SHA256.Digest { SHA256.hash(data: data) }

/// How a backup manifest checksums each file (`WALE_MANIFEST_CHECKSUM`).
///
/// CRC-32C by default, as PostgreSQL's own backup manifests (pg_basebackup, pg_verifybackup):
/// the manifest guards against files damaged or mixed up between backup and restore, not against
/// an attacker who can rewrite the archive (who could rewrite the manifest too). SHA-256 was 37%
/// of backup-push's CPU on the benchmark cluster (1.75 GB/s even with SHA-NI); the CRC runs on
/// SSE4.2's crc32 instruction. Manifests written with SHA-256 (older backups, or this setting)
/// are verified with SHA-256.
public enum ManifestChecksum: String, Sendable, CaseIterable {
    case crc32c, sha256

    /// The manifest field holding a file's checksum is named after its algorithm.
    var field: String { rawValue }

    public static func from(env: [String: String]) throws -> ManifestChecksum {
        guard let v = env["WALE_MANIFEST_CHECKSUM"], !v.isEmpty else { return .crc32c }
        guard let k = ManifestChecksum(rawValue: v.lowercased()) else {
            throw WALEError(
                .user, "WALE_MANIFEST_CHECKSUM=\(v) is not a checksum wal-e knows",
                hint: "crc32c (the default, as PostgreSQL's backup manifests) or sha256")
        }
        return k
    }
}

/// The running checksum of one file at a time: CRC-32C inline (cheaper than handing the bytes
/// to another thread), SHA-256 on its own thread beside the compression.
final class FileChecksummer {
    let kind: ManifestChecksum
    private var crc: UInt32 = 0
    private let sha: BackgroundSHA256?

    init(_ kind: ManifestChecksum) {
        self.kind = kind
        sha = kind == .sha256 ? BackgroundSHA256() : nil
    }

    func update(_ chunk: [UInt8]) {
        if let sha { sha.update(chunk) } else { crc = chunk.withUnsafeBytes { wale_crc32c(crc, $0.baseAddress, $0.count) } }
    }

    /// For bytes the caller reuses after the call.
    func update(copying b: UnsafeRawBufferPointer) {
        if let sha { sha.update(copying: b) } else { crc = wale_crc32c(crc, b.baseAddress, b.count) }
    }

    /// Lower-case hex of the checksum of everything since the last call; starts a new file.
    func finalizeAndReset() -> String {
        if let sha { return sha.finalizeAndReset() }
        defer { crc = 0 }
        return Self.hex32(crc)
    }

    static func hex32(_ v: UInt32) -> String {
        hexString([UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)])
    }

    /// The checksum of one whole buffer.
    static func checksum(_ data: [UInt8], _ kind: ManifestChecksum) -> String {
        switch kind {
        case .sha256: return hexString(sha256(data))
        case .crc32c: return hex32(data.withUnsafeBytes { wale_crc32c(0, $0.baseAddress, $0.count) })
        }
    }
}
