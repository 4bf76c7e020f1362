/// The storage backends a prefix URL can name.
public enum StorageScheme: String, Sendable, CaseIterable {
    case s3, wabs, swift, gs, file
}

/// A WAL-E storage prefix such as `s3://bucket/path` or `file://localhost/backups/pg`.
///
/// As in WAL-E: the netloc is the *store name* (bucket or container; ignored for `file`), and the
/// path without its leading `/`, plus one trailing `/` when non-empty, is the *path prefix*.
public struct StoragePrefix: Sendable, Equatable, CustomStringConvertible {
    public let scheme: StorageScheme
    public let storeName: String
    public let pathPrefix: String
    public let raw: String

    public enum ParseError: Error, Equatable, Sendable {
        case notAURL(String)
        case unknownScheme(String)
        case missingStoreName(String)
        case relativeFilePath(String)
    }

    public init(parsing raw: String) throws(ParseError) {
        self.raw = raw
        guard let sep = raw.firstRange(of: "://") else { throw .notAURL(raw) }
        let schemeText = String(raw[..<sep.lowerBound]).lowercased()
        guard let scheme = StorageScheme(rawValue: schemeText) else { throw .unknownScheme(schemeText) }
        self.scheme = scheme
        let rest = raw[sep.upperBound...]
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        storeName = String(rest[..<slash])
        var path = String(rest[slash...])
        if scheme != .file && storeName.isEmpty { throw .missingStoreName(raw) }
        if scheme == .file && path.isEmpty && !storeName.isEmpty { throw .relativeFilePath(raw) }
        while path.hasPrefix("/") { path.removeFirst() }
        if !path.isEmpty && !path.hasSuffix("/") { path += "/" }
        pathPrefix = path
    }

    public var description: String { raw }

    /// `<pathprefix>wal_005/`
    public var walDirectory: String { pathPrefix + "wal_005/" }
    /// `<pathprefix>basebackups_005/`
    public var baseBackupsDirectory: String { pathPrefix + "basebackups_005/" }

    /// The object key of an archived WAL file, e.g. `a/b/wal_005/000000010000000000000001.lzo`.
    public func walKey(_ basename: String, suffix: String) -> String { walDirectory + basename + suffix }

    /// The URL WAL-E prints for a key: `<scheme>://<store>/<key>`.
    public func url(forKey key: String) -> String { "\(scheme.rawValue)://\(storeName)/\(key)" }
}
