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
        guard text.hasSuffix("}"), text.count > 2 else { return text }
        return String(text.dropLast()) + ",\"\(key)\":\"\(digest(text))\"}"
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

    private static func digest(_ text: String) -> String { hexString(SHA256.hash(data: Array(text.utf8))) }
}
