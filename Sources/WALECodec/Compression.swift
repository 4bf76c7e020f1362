import WALECore

/// The compression formats wal-e writes. lzop is the default, because WAL-E can read it.
public enum Compression: String, Sendable, CaseIterable {
    case lzop
    case zstd
    case lz4

    /// The object key suffix each format is stored under.
    public var suffix: String {
        switch self {
        case .lzop: return ".lzo"
        case .zstd: return ".zst"
        case .lz4: return ".lz4"
        }
    }

    /// Accepts `lzop`/`lzo`, `zstd`/`zst`, `lz4` in any case.
    public init?(name: String) {
        switch name.lowercased() {
        case "lzop", "lzo": self = .lzop
        case "zstd", "zst": self = .zstd
        case "lz4": self = .lz4
        default: return nil
        }
    }

    public func encoder(mode: UInt32 = 0, mtime: UInt64 = 0) -> any ByteTransform {
        switch self {
        case .lzop: return LzopEncoder(mode: mode, mtime: mtime)
        case .zstd: return ZstdEncoder()
        case .lz4: return LZ4Encoder()
        }
    }

    /// Recognises a format from an object's first bytes (WAL-E keeps `.lzo` even when it is
    /// gpg-encrypted, so the key suffix alone cannot be trusted).
    public static func sniff(_ head: [UInt8]) -> Sniffed {
        if head.starts(with: Lzop.magic) { return .compressed(.lzop) }
        if head.starts(with: [0x28, 0xB5, 0x2F, 0xFD]) { return .compressed(.zstd) }
        if head.starts(with: [0x04, 0x22, 0x4D, 0x18]) { return .compressed(.lz4) }
        if head.starts(with: NativeEncryption.magic) { return .native }
        if let first = head.first, first & 0x80 != 0 {
            // OpenPGP packet tag: old format (bits 5-2) or new format (bits 5-0).
            let tag = first & 0x40 != 0 ? first & 0x3F : (first >> 2) & 0x0F
            if tag == 1 || tag == 3 { return .openPGP }
        }
        return .unknown
    }

    public enum Sniffed: Equatable, Sendable {
        case compressed(Compression)
        case openPGP
        /// wal-e's native encryption (`NativeEncryption`).
        case native
        case unknown
    }
}

/// Decodes whichever format the stream turns out to be, by its magic bytes.
public final class AutoDecoder: ByteTransform {
    private var head: [UInt8] = []
    private var inner: (any ByteTransform)?
    private var finished = false
    private let name: String

    /// `name` is used in error messages (the object key).
    public init(name: String) { self.name = name }

    public func push(_ chunk: [UInt8]) throws {
        if let inner { return try inner.push(chunk) }
        head += chunk
        if head.count >= 9 { try choose() }
    }

    public func finish() throws {
        finished = true
        if inner == nil { try choose() }
        try inner!.finish()
    }

    public func pull(limit: Int) throws -> [UInt8] {
        guard let inner else { return [] }
        return try inner.pull(limit: limit)
    }

    private func choose() throws {
        let d: any ByteTransform
        switch Compression.sniff(head) {
        case .compressed(.lzop): d = LzopDecoder()
        case .compressed(.zstd): d = ZstdDecoder()
        case .compressed(.lz4): d = LZ4Decoder()
        case .openPGP:
            // WAL-E's gpg layer over the compressed stream: decrypt, then sniff again. As with
            // WAL-E, the keyring decides; unlike WAL-E, no key ID has to be set to read.
            d = ChainedTransform(try GPG.decryptor(name: name), AutoDecoder(name: name + " (decrypted)"))
        case .native:
            // Decryption on its own thread, beside the decompression (see `BackgroundTransform`).
            d = ChainedTransform(BackgroundTransform(NativeDecryptor(name: name)), AutoDecoder(name: name + " (decrypted)"))
        case .unknown:
            throw WALEError(
                .corrupt, "\(name) is not in any format wal-e knows",
                detail: head.isEmpty ? "the object is empty" : "it starts with bytes \(head.prefix(9).map { String($0, radix: 16) })")
        }
        inner = d
        try d.push(head)
        head = []
    }
}
