import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import WALECore
import _CryptoExtras

/// OAuth2 access tokens for GCS, as Google's libraries get them: a service account signs a JWT
/// (RS256) and exchanges it at its `token_uri` (RFC 7523), an authorized user trades its refresh
/// token there, and a Compute Engine instance asks its metadata server. The token is good for
/// about an hour; `TokenCache` renews it before then.
struct GCSAuthenticator: Sendable {
    let config: GCSConfiguration
    let core: HTTPCore
    static let scope = "https://www.googleapis.com/auth/devstorage.read_write"

    func token() async throws -> Expiring<String> {
        switch config.credentials {
        case .anonymous:
            return Expiring("", expiration: nil)
        case .serviceAccount(let email, let pem, let keyID, let tokenURI):
            // The audience is always Google's token endpoint, whatever URI the assertion is posted
            // to (Google's server-to-server OAuth2 rules; google-auth does the same).
            let assertion = try Self.assertion(
                email: email, pem: pem, keyID: keyID, audience: GCSConfiguration.defaultTokenURI, now: POSIX.now())
            return try await exchange(
                tokenURI, form: [("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"), ("assertion", assertion)],
                who: "the service account \(email)")
        case .authorizedUser(let clientID, let secret, let refresh, let tokenURI):
            return try await exchange(
                tokenURI, form: [("grant_type", "refresh_token"), ("client_id", clientID), ("client_secret", secret), ("refresh_token", refresh)],
                who: "the authorized user of \(config.credentialsSource)")
        case .metadata(let host):
            return try await metadataToken(host: host)
        }
    }

    /// The signed JWT a service account presents: header and claims base64url-encoded, signed with
    /// RSASSA-PKCS1-v1_5 over SHA-256.
    static func assertion(email: String, pem: String, keyID: String?, audience: String, now: Double) throws -> String {
        var header: [(String, JSON)] = [("alg", .string("RS256")), ("typ", .string("JWT"))]
        if let keyID { header.append(("kid", .string(keyID))) }
        let iat = Int64(now.rounded(.down))
        let claims: [(String, JSON)] = [
            ("iss", .string(email)), ("scope", .string(scope)), ("aud", .string(audience)), ("iat", .int(iat)), ("exp", .int(iat + 3600)),
        ]
        let input = base64URL(Array(JSON.object(header).serialized().utf8)) + "." + base64URL(Array(JSON.object(claims).serialized().utf8))
        let key: _RSA.Signing.PrivateKey
        do { key = try _RSA.Signing.PrivateKey(pemRepresentation: pem) } catch {
            throw WALEError(.user, "the service account's private_key is not an RSA private key in PEM form")
        }
        let signature = try Array(input.utf8).withUnsafeBytes { try key.signature(for: $0, padding: .insecurePKCS1v1_5) }
        return input + "." + base64URL(signature.rawRepresentation.withUnsafeBytes { Array($0) })
    }

    /// POSTs a form to a token endpoint and reads `access_token` and `expires_in`.
    func exchange(_ url: String, form: [(String, String)], who: String) async throws -> Expiring<String> {
        let body = form.map { percentEncode($0.0, keepSlash: false) + "=" + percentEncode($0.1, keepSlash: false) }.joined(separator: "&")
        let r = try await core.send("OAuth2 token from \(url)") { handle in
            var req = HTTPClientRequest(url: url)
            req.method = .POST
            req.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
            core.attach(ByteBuffer(string: body), to: &req, handle: handle)
            return req
        } check: { r in
            if HTTPCore.isTransientStatus(r.status) { throw WALEError(.io, "the token endpoint \(url) answered \(r.status)") }
        }
        guard r.status == 200 else {
            // OAuth2's error answer names the problem (invalid_grant, invalid_client) without secrets.
            let answer = try? JSON.parse(String(decoding: r.body.prefix(2000), as: UTF8.self))
            let reason = [answer?["error"]?.string, answer?["error_description"]?.string].compactMap { $0 }.joined(separator: ": ")
            throw WALEError(
                .user, "the token endpoint \(url) refused \(who) (HTTP \(r.status)\(reason.isEmpty ? "" : ", " + reason))",
                hint: "check the key file in \(config.credentialsSource): it may be revoked, or its clock skewed")
        }
        return try parseToken(r, from: url)
    }

    func metadataToken(host: String) async throws -> Expiring<String> {
        let url = "http://\(host)/computeMetadata/v1/instance/service-accounts/default/token"
        let r: HTTPCore.Response
        do {
            r = try await core.send("OAuth2 token from the metadata server") { _ in
                var req = HTTPClientRequest(url: url)
                req.headers.add(name: "Metadata-Flavor", value: "Google")
                return req
            } check: { r in
                if HTTPCore.isTransientStatus(r.status) { throw WALEError(.io, "the metadata server answered \(r.status)") }
            }
        } catch let e as WALEError where e.kind == .io {
            throw WALEError(
                .user, "no Google credentials: GOOGLE_APPLICATION_CREDENTIALS is not set and the metadata server at \(host) did not answer",
                detail: e.message, hint: "set GOOGLE_APPLICATION_CREDENTIALS to a service account's JSON key file")
        }
        guard r.status == 200 else {
            throw WALEError(
                .user, "the metadata server at \(host) gave no token (HTTP \(r.status))",
                hint: "give the instance a service account with storage access, or set GOOGLE_APPLICATION_CREDENTIALS")
        }
        return try parseToken(r, from: url)
    }

    func parseToken(_ r: HTTPCore.Response, from url: String) throws -> Expiring<String> {
        guard let json = try? JSON.parse(String(decoding: r.body, as: UTF8.self)), let token = json["access_token"]?.string, !token.isEmpty else {
            throw WALEError(.io, "the token answer from \(url) has no access_token")
        }
        let lifetime = json["expires_in"]?.int ?? 3600
        return Expiring(token, expiration: POSIX.now() + Double(lifetime))
    }
}

/// Base64url without padding (RFC 7515), for JWTs.
func base64URL(_ bytes: [UInt8]) -> String {
    var s = base64(bytes)
    while s.hasSuffix("=") { s.removeLast() }
    return String(s.map { $0 == "+" ? "-" : $0 == "/" ? "_" : $0 })
}
