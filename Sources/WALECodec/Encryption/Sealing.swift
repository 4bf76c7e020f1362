import WALECore

/// How new objects are encrypted after compression: not at all, with gpg (WAL-E's
/// `WALE_GPG_KEY_ID`) or natively to public keys (`WALE_ENCRYPTION_PUBLIC_KEYS`). Reading needs
/// no setting: every object says by its first bytes what it is.
public enum Sealing: Sendable {
    case clear
    case gpg(keyID: String)
    case native([EncryptionPublicKey])

    /// `compressor`, then the encryption. `contentDigest` (wal-push) goes into a native object's
    /// trailer, so that a re-push can be compared without the private key.
    public func seal(_ compressor: any ByteTransform, contentDigest: TrailerDigest? = nil) throws -> any ByteTransform {
        switch self {
        case .clear: return compressor
        case .gpg(let keyID): return ChainedTransform(compressor, try GPG.encryptor(keyID: keyID))
        case .native(let keys):
            // On its own thread: encryption then overlaps the compression of the next chunk (a
            // 650 MB relation file is one pipeline; in series it added 16 % to backup-push), and
            // the key wrapping the compression of the first.
            return ChainedTransform(compressor, BackgroundTransform { try NativeEncryptor(recipients: keys, contentDigest: contentDigest) })
        }
    }

    /// The encryption alone (manifests: small JSON, not compressed); nil when clear.
    public func encryptor() throws -> (any ByteTransform)? {
        switch self {
        case .clear: return nil
        case .gpg(let keyID): return try GPG.encryptor(keyID: keyID)
        case .native(let keys): return try NativeEncryptor(recipients: keys)
        }
    }

    /// The content type of an encrypted manifest.
    public var contentType: String {
        switch self {
        case .clear: return "application/json"
        case .gpg: return "application/pgp-encrypted"
        case .native: return "application/octet-stream"
        }
    }

    /// The key ids a reader needs (native), for the sentinel and messages.
    public var keyIDs: [String] {
        if case .native(let keys) = self { return keys.map(\.idText) }
        return []
    }
}
