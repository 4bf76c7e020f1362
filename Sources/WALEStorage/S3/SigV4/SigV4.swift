import Crypto
import WALECodec
import WALECore

/// AWS credentials. The secret and the token never appear in logs or error messages.
public struct AWSCredentials: Sendable, Equatable {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }
}

/// AWS Signature Version 4 (header form): canonical request, string to sign, signing key and
/// signature, each exposed separately so each can be checked against AWS's published examples.
public struct SigV4Signer: Sendable {
    public let region: String
    public let service: String

    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"

    public init(region: String, service: String = "s3") {
        self.region = region
        self.service = service
    }

    /// RFC 3986 encoding as SigV4 wants it (`percentEncode`).
    public static func uriEncode(_ s: String, keepSlash: Bool) -> String { percentEncode(s, keepSlash: keepSlash) }

    /// The canonical request and the signed-headers list. `path` is the already-encoded path;
    /// `query` holds raw (unencoded) names and values.
    public static func canonicalRequest(
        method: String, path: String, query: [(String, String)], headers: [(String, String)], payloadHash: String
    ) -> (request: String, signedHeaders: String) {
        var pairs: [(String, String)] = query.map { (uriEncode($0.0, keepSlash: false), uriEncode($0.1, keepSlash: false)) }
        pairs.sort { (a: (String, String), b: (String, String)) -> Bool in a.0 == b.0 ? a.1 < b.1 : a.0 < b.0 }
        let q = pairs.map { (p: (String, String)) -> String in p.0 + "=" + p.1 }.joined(separator: "&")
        var byName: [String: [String]] = [:]
        for (k, v) in headers { byName[k.lowercased(), default: []].append(collapseSpaces(v)) }
        let names = byName.keys.sorted()
        let canonicalHeaders = names.map { "\($0):\(byName[$0]!.joined(separator: ","))\n" }.joined()
        let signed = names.joined(separator: ";")
        return ([method, path.isEmpty ? "/" : path, q, canonicalHeaders, signed, payloadHash].joined(separator: "\n"), signed)
    }

    static func collapseSpaces(_ v: String) -> String {
        var out = ""
        var lastSpace = false
        for c in v.trimmingWhitespace() {
            if c == " " {
                if !lastSpace { out.append(c) }
                lastSpace = true
            } else {
                out.append(c)
                lastSpace = false
            }
        }
        return out
    }

    public func scope(date: String) -> String { "\(date.prefix(8))/\(region)/\(service)/aws4_request" }

    /// `amzDate` is `YYYYMMDDTHHMMSSZ`.
    public func stringToSign(canonicalRequest: String, amzDate: String) -> String {
        let hash = hexString(SHA256.hash(data: Array(canonicalRequest.utf8)))
        return "AWS4-HMAC-SHA256\n\(amzDate)\n\(scope(date: amzDate))\n\(hash)"
    }

    public func signingKey(secret: String, date: String) -> SymmetricKey {
        func hmac(_ key: SymmetricKey, _ s: String) -> SymmetricKey {
            SymmetricKey(data: Array(HMAC<SHA256>.authenticationCode(for: Array(s.utf8), using: key)))
        }
        var k = SymmetricKey(data: Array(("AWS4" + secret).utf8))
        for part in [String(date.prefix(8)), region, service, "aws4_request"] { k = hmac(k, part) }
        return k
    }

    public func signature(stringToSign: String, secret: String, amzDate: String) -> String {
        hexString(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: signingKey(secret: secret, date: amzDate)))
    }

    /// The `Authorization` header value for a request whose headers (including host, x-amz-date,
    /// x-amz-content-sha256 and any token) are `headers`.
    public func authorization(
        method: String, path: String, query: [(String, String)], headers: [(String, String)], payloadHash: String,
        amzDate: String, credentials: AWSCredentials
    ) -> String {
        let (creq, signed) = Self.canonicalRequest(method: method, path: path, query: query, headers: headers, payloadHash: payloadHash)
        let sts = stringToSign(canonicalRequest: creq, amzDate: amzDate)
        let sig = signature(stringToSign: sts, secret: credentials.secretAccessKey, amzDate: amzDate)
        return "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope(date: amzDate)), SignedHeaders=\(signed), Signature=\(sig)"
    }

    /// `YYYYMMDDTHHMMSSZ` for a time.
    public static func amzDate(_ epoch: Double) -> String {
        let t = UTCTime(epochSeconds: epoch).isoNoZone  // 2026-11-21T04:17:43.913763
        let d = t.prefix(10).filter { $0 != "-" }
        let h = t.dropFirst(11).prefix(8).filter { $0 != ":" }
        return d + "T" + h + "Z"
    }
}
