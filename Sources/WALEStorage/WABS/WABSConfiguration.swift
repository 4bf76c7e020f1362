import WALECore

/// Where and how to reach an Azure Blob container (`wabs://CONTAINER/PATH`), resolved from WAL-E's
/// variables: `WABS_ACCOUNT_NAME` (or `-a/--wabs-account-name`) and `WABS_ACCESS_KEY` or
/// `WABS_SAS_TOKEN`. `WABS_ENDPOINT` (wal-e's addition; WAL-E always used
/// `https://ACCOUNT.blob.core.windows.net`) points at another cloud or an emulator, path-style
/// endpoints included (`http://127.0.0.1:10000/devstoreaccount1`).
public struct WABSConfiguration: Sendable {
    public enum Credential: Sendable {
        /// The account key (decoded), for Shared Key signatures.
        case sharedKey([UInt8])
        /// A SAS token's query string, appended to every request.
        case sas(String)
    }

    public var account: String
    public var container: String
    public var credential: Credential
    public var scheme: String
    public var host: String
    public var port: Int?
    /// Path before the container (empty for the public cloud; `/ACCOUNT` on an emulator).
    public var basePath: String
    /// Block size of uploads that do not fit one Put Blob.
    public var blockSize = 4 << 20
    public var blocksInFlight = 4
    /// Upload bytes held in memory at once by this process.
    public var uploadMemory = 16 << 20
    /// Deadlines and the minimum-progress rule of every request (see TransferLimits).
    public var limits = TransferLimits()
    public var requestTimeout: Double {
        get { limits.requestTimeout }
        set { limits.requestTimeout = newValue }
    }
    /// List Blobs page size (the service's default, 5000, when nil; tests use small pages).
    public var listPageSize: Int?

    public static func resolve(container: String, env: [String: String], accountFlag: String?) throws -> WABSConfiguration {
        func value(_ name: String) -> String? { env[name].flatMap { $0.isEmpty ? nil : $0 } }
        guard let account = accountFlag.flatMap({ $0.isEmpty ? nil : $0 }) ?? value("WABS_ACCOUNT_NAME") else {
            throw WALEError(
                .user, "no Azure storage account given for wabs://\(container)",
                hint: "set WABS_ACCOUNT_NAME (or -a/--wabs-account-name) and WABS_ACCESS_KEY or WABS_SAS_TOKEN")
        }
        let credential: Credential
        if let key = value("WABS_ACCESS_KEY") {
            guard let bytes = base64Decode(key), !bytes.isEmpty else {
                throw WALEError(
                    .user, "WABS_ACCESS_KEY is not a base64 account key",
                    hint: "copy key1 or key2 from the storage account's Access keys, as it is shown")
            }
            credential = .sharedKey(bytes)
        } else if let sas = value("WABS_SAS_TOKEN") {
            credential = .sas(sas.hasPrefix("?") ? String(sas.dropFirst()) : sas)
        } else {
            throw WALEError(
                .user, "no Azure credentials for account \(account)",
                hint: "set WABS_ACCESS_KEY (the account key) or WABS_SAS_TOKEN in the environment")
        }
        let endpoint = value("WABS_ENDPOINT") ?? "https://\(account).blob.core.windows.net"
        guard let (scheme, host, port, path) = parseEndpoint(endpoint) else {
            throw WALEError(
                .user, "WABS_ENDPOINT is not an http(s) URL: \"\(endpoint)\"",
                hint: "use e.g. https://ACCOUNT.blob.core.windows.net or http://127.0.0.1:10000/ACCOUNT")
        }
        var c = WABSConfiguration(
            account: account, container: container, credential: credential, scheme: scheme, host: host, port: port, basePath: path)
        c.limits = try TransferLimits.resolve(env: env, timeoutVariable: "WALE_WABS_REQUEST_TIMEOUT")
        return c
    }

    /// `scheme://host[:port][/path]` with a trailing slash dropped.
    static func parseEndpoint(_ s: String) -> (String, String, Int?, String)? {
        guard let r = s.range(of: "://") else { return nil }
        let scheme = s[..<r.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { return nil }
        let rest = s[r.upperBound...]
        let slash = rest.firstIndex(of: "/") ?? rest.endIndex
        let authority = rest[..<slash]
        var path = String(rest[slash...])
        while path.hasSuffix("/") { path.removeLast() }
        guard !authority.isEmpty else { return nil }
        if let colon = authority.lastIndex(of: ":") {
            guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else { return nil }
            return (scheme, String(authority[..<colon]), p, path)
        }
        return (scheme, String(authority), nil, path)
    }

    /// The Host header value.
    var authority: String { port.map { "\(host):\($0)" } ?? host }

    /// The encoded path of a blob, or of the container with `key` nil.
    func path(_ key: String?) -> String {
        "\(basePath)/\(container)" + (key.map { "/" + percentEncode($0, keepSlash: true) } ?? "")
    }
}

/// Standard base64 (with or without padding); nil on any other character.
func base64Decode(_ s: String) -> [UInt8]? {
    var out: [UInt8] = []
    var acc: UInt32 = 0
    var bits = 0
    for c in s.utf8 {
        let v: UInt32
        switch c {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"): v = UInt32(c - UInt8(ascii: "A"))
        case UInt8(ascii: "a")...UInt8(ascii: "z"): v = UInt32(c - UInt8(ascii: "a")) + 26
        case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt32(c - UInt8(ascii: "0")) + 52
        case UInt8(ascii: "+"): v = 62
        case UInt8(ascii: "/"): v = 63
        case UInt8(ascii: "="): continue
        default: return nil
        }
        acc = acc << 6 | v
        bits += 6
        if bits >= 8 {
            bits -= 8
            out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
        }
    }
    return out
}
