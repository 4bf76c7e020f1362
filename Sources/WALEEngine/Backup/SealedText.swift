import Crypto
import WALECodec
import WALECore

/// JSON text that carries the SHA-256 of its own text as its last key, `{…,"<key>":"<hex>"}`:
/// the backup sentinel (`wal_e_sentinel_sha256`) and the partition manifests (`manifest_sha256`).
/// A byte changed anywhere — a digit of a stop position, a modification time, a name — no longer
/// matches; readers that do not know the key (WAL-E) ignore it. The digest is of the text without
/// the key, i.e. ending in the `}` the key was put before.
enum SealedText {
    static func seal(_ text: String, key: String) -> String {
        var sealed = text
        seal(&sealed, key: key)
        return sealed
    }

    /// Seals `text` where it is: a partition's manifest is ~1 MB, and the copies a sealed copy
    /// took (the text, its bytes to hash, the text without its `}`, the joined result) overlapped
    /// across the partitions finishing together, the larger part of backup-push's peak RSS with
    /// many small files (test_many_files).
    static func seal(_ text: inout String, key: String) {
        guard text.utf8.count > 2, text.utf8.last == UInt8(ascii: "}") else { return }
        let hex = digest(&text)
        text.removeLast()
        text += ",\"\(key)\":\"\(hex)\"}"
    }

    enum Verdict: Equatable {
        /// No seal (written before seals, or by WAL-E).
        case unsealed
        case intact
        /// The seal field itself is cut or garbled.
        case malformed
        case altered(stored: String, computed: String)
    }

    static func check(_ text: String, key: String) -> Verdict {
        guard let r = text.range(of: ",\"\(key)\":\"", options: .backwards) else { return .unsealed }
        let tail = text[r.upperBound...]
        let stored = String(tail.dropLast(2))
        guard tail.hasSuffix("\"}"), stored.count == 64 else { return .malformed }
        let computed = digest(String(text[..<r.lowerBound]) + "}")
        return computed == stored ? .intact : .altered(stored: stored, computed: computed)
    }

    private static func digest(_ text: String) -> String {
        var text = text
        return digest(&text)
    }

    /// The SHA-256 of the text's UTF-8, read where it is (`withUTF8` makes it contiguous first if
    /// it is not, which a String built by appending already is).
    private static func digest(_ text: inout String) -> String {
        text.withUTF8 { hexString(SHA256.hash(data: UnsafeRawBufferPointer($0))) }
    }
}
