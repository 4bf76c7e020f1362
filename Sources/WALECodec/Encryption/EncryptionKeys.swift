#if canImport(Glibc)
import Glibc
#endif
import Crypto
import WALECore

/// Key pairs of wal-e's native encryption (X25519). A key file is one text line after comments:
///
///     # wal-e public key ...
///     wal-e-public-key v1 <key id, 16 hex> <public key, 64 hex>
///
///     # wal-e private key ...
///     wal-e-private-key v1 <key id, 16 hex> <private key, 64 hex>
///
/// The key id is the first 8 bytes of SHA-256("wal-e key id v1" ‖ public key): it names the key
/// in every object's header and in messages, and says nothing about the key.
public struct EncryptionPublicKey: Sendable, Equatable {
    public let id: [UInt8]
    public let raw: [UInt8]
    var key: Curve25519.KeyAgreement.PublicKey { try! Curve25519.KeyAgreement.PublicKey(rawRepresentation: raw) }

    public init(raw: [UInt8]) throws {
        guard raw.count == 32, (try? Curve25519.KeyAgreement.PublicKey(rawRepresentation: raw)) != nil else {
            throw WALEError(.user, "not an X25519 public key")
        }
        self.raw = raw
        id = EncryptionKeys.keyID(raw)
    }

    public var idText: String { hexString(id) }

    public func text() -> String {
        "# wal-e public key: new objects are encrypted to it (WALE_ENCRYPTION_PUBLIC_KEYS); it cannot decrypt them\n"
            + "wal-e-public-key v1 \(idText) \(hexString(raw))\n"
    }
}

public struct EncryptionPrivateKey: Sendable {
    let raw: [UInt8]
    public let publicKey: EncryptionPublicKey
    var key: Curve25519.KeyAgreement.PrivateKey { try! Curve25519.KeyAgreement.PrivateKey(rawRepresentation: raw) }

    init(_ key: Curve25519.KeyAgreement.PrivateKey) {
        raw = Array(key.rawRepresentation)
        publicKey = try! EncryptionPublicKey(raw: Array(key.publicKey.rawRepresentation))
    }

    public static func generate() -> EncryptionPrivateKey { EncryptionPrivateKey(Curve25519.KeyAgreement.PrivateKey()) }

    public var id: [UInt8] { publicKey.id }

    public func text() -> String {
        "# wal-e private key: it decrypts the archive (WALE_ENCRYPTION_PRIVATE_KEYS); keep it off the database host\n"
            + "wal-e-private-key v1 \(publicKey.idText) \(hexString(raw))\n"
    }
}

public enum EncryptionKeys {
    public static let publicKeysVariable = "WALE_ENCRYPTION_PUBLIC_KEYS"
    public static let privateKeysVariable = "WALE_ENCRYPTION_PRIVATE_KEYS"

    static func keyID(_ publicRaw: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(data: Array("wal-e key id v1".utf8) + publicRaw).prefix(8))
    }

    /// The one key line of a key file: (kind, id, key bytes).
    static func parse(_ text: String, path: String, kind: String) throws -> [UInt8] {
        let lines = text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).filter { !$0.hasPrefix("#") && !$0.allSatisfy { $0 == " " } }
        let f = lines.first?.split(separator: " ") ?? []
        guard lines.count == 1, f.count == 4, f[0] == "wal-e-\(kind)-key", f[1] == "v1", let id = hexBytes(f[2]), id.count == 8,
            let key = hexBytes(f[3]), key.count == 32
        else {
            throw WALEError(
                .user, "\(path) is not a wal-e \(kind) key file",
                hint: "create a key pair with: wal-e key generate PRIVATE_FILE PUBLIC_FILE")
        }
        return key + id
    }

    static func hexBytes(_ s: some StringProtocol) -> [UInt8]? {
        let u = Array(s.utf8)
        guard u.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(u.count / 2)
        var i = 0
        while i < u.count {
            guard let hi = hexValue(u[i]), let lo = hexValue(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    static func read(_ path: String) throws -> String {
        guard let fd = Optional(open(path, O_RDONLY | O_CLOEXEC)), fd >= 0 else {
            throw WALEError(.user, "cannot read the key file \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while out.count < 65536 {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, 4096) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func publicKey(path: String) throws -> EncryptionPublicKey {
        let b = try parse(read(path), path: path, kind: "public")
        let key = try EncryptionPublicKey(raw: Array(b[0..<32]))
        guard key.id == Array(b[32...]) else { throw WALEError(.user, "\(path): the key id does not match the key", hint: "the file was edited; use the one wal-e key generate wrote") }
        return key
    }

    public static func privateKey(path: String) throws -> EncryptionPrivateKey {
        var st = stat()
        if stat(path, &st) == 0, st.st_mode & 0o077 != 0 {
            throw WALEError(.user, "the private key file \(path) is readable by other users", hint: "chmod 600 \(path)")
        }
        let b = try parse(read(path), path: path, kind: "private")
        guard let k = try? Curve25519.KeyAgreement.PrivateKey(rawRepresentation: Array(b[0..<32])) else {
            throw WALEError(.user, "\(path) does not hold an X25519 private key")
        }
        let key = EncryptionPrivateKey(k)
        guard key.id == Array(b[32...]) else { throw WALEError(.user, "\(path): the key id does not match the key", hint: "the file was edited; use the one wal-e key generate wrote") }
        return key
    }

    public static func paths(_ value: String?) -> [String] {
        (value ?? "").split(separator: ",").map { String($0).trimmingWhitespace() }.filter { !$0.isEmpty }
    }

    /// The recipients of new objects, from `WALE_ENCRYPTION_PUBLIC_KEYS` (empty: not encrypting).
    public static func recipients(env: [String: String]) throws -> [EncryptionPublicKey] {
        try paths(env[publicKeysVariable]).map { try publicKey(path: $0) }
    }

    /// The keys that may decrypt, from `WALE_ENCRYPTION_PRIVATE_KEYS` in this process's
    /// environment (read when the first encrypted object is met).
    public static func privateKeysFromEnvironment() throws -> [EncryptionPrivateKey] {
        try paths(getenv(privateKeysVariable).map { String(cString: $0) }).map { try privateKey(path: $0) }
    }
}
