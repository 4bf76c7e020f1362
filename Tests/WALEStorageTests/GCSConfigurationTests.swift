import Foundation
import Testing
import WALECore
import _CryptoExtras
@testable import WALEStorage

/// gs:// settings (google.auth.default()'s order), the service account's JWT, and WAL-E's names.
@Suite struct GCSConfigurationTests {
    static let key = try! _RSA.Signing.PrivateKey(keySize: .bits2048)

    func keyFile(_ fields: [String: String]) throws -> String {
        let path = NSTemporaryDirectory() + "wal-e-gcs-\(UUID().uuidString).json"
        let data = try JSONSerialization.data(withJSONObject: fields)
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }

    var serviceAccount: [String: String] {
        ["type": "service_account", "client_email": "a@p.iam.gserviceaccount.com", "private_key": Self.key.pemRepresentation,
         "private_key_id": "k1", "token_uri": "http://127.0.0.1:9/token"]
    }

    @Test func credentialsAreFoundInGooglesOrder() throws {
        let sa = try keyFile(serviceAccount)
        defer { unlink(sa) }
        // A credentials file wins over the emulator variable; the emulator sets the endpoint.
        var c = try GCSConfiguration.resolve(bucket: "b", env: ["GOOGLE_APPLICATION_CREDENTIALS": sa, "STORAGE_EMULATOR_HOST": "127.0.0.1:4443"])
        #expect(c.endpoint == "http://127.0.0.1:4443")
        guard case .serviceAccount(let email, _, let kid, let uri) = c.credentials else { Issue.record("not a service account"); return }
        #expect(email == "a@p.iam.gserviceaccount.com" && kid == "k1" && uri == "http://127.0.0.1:9/token")
        // The emulator alone: anonymous.
        c = try GCSConfiguration.resolve(bucket: "b", env: ["STORAGE_EMULATOR_HOST": "http://127.0.0.1:4443/"])
        #expect(c.credentials == .anonymous && c.endpoint == "http://127.0.0.1:4443")
        // Nothing configured: the public endpoint and the metadata server (GCE_METADATA_HOST overrides).
        c = try GCSConfiguration.resolve(bucket: "b", env: ["HOME": "/nonexistent"])
        #expect(c.endpoint == "https://storage.googleapis.com" && c.credentials == .metadata(host: "169.254.169.254"))
        c = try GCSConfiguration.resolve(bucket: "b", env: ["HOME": "/nonexistent", "GCE_METADATA_HOST": "127.0.0.1:8080"])
        #expect(c.credentials == .metadata(host: "127.0.0.1:8080"))
        // gcloud's application default credentials, under CLOUDSDK_CONFIG.
        let dir = NSTemporaryDirectory() + "wal-e-gcloud-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let user = ["type": "authorized_user", "client_id": "id", "client_secret": "s", "refresh_token": "r"]
        try JSONSerialization.data(withJSONObject: user).write(to: URL(fileURLWithPath: dir + "/application_default_credentials.json"))
        c = try GCSConfiguration.resolve(bucket: "b", env: ["HOME": "/nonexistent", "CLOUDSDK_CONFIG": dir])
        #expect(c.credentials == .authorizedUser(clientID: "id", clientSecret: "s", refreshToken: "r", tokenURI: "https://oauth2.googleapis.com/token"))
    }

    @Test func badSettingsAreNamedWithoutTheKey() throws {
        func message(_ env: [String: String]) -> String {
            do {
                _ = try GCSConfiguration.resolve(bucket: "b", env: env)
                return "accepted"
            } catch {
                #expect(error.kind == .user)
                return error.message
            }
        }
        #expect(message(["GOOGLE_APPLICATION_CREDENTIALS": "/nonexistent.json"]).contains("cannot be read"))
        var bad = serviceAccount
        bad["private_key"] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        let f = try keyFile(bad)
        defer { unlink(f) }
        let m = message(["GOOGLE_APPLICATION_CREDENTIALS": f])
        #expect(m.contains("not an RSA private key") && !m.contains("AAAA"))
        var other = serviceAccount
        other["type"] = "external_account"
        let g = try keyFile(other)
        defer { unlink(g) }
        #expect(message(["GOOGLE_APPLICATION_CREDENTIALS": g]).contains("of type external_account"))
        #expect(message(["STORAGE_EMULATOR_HOST": "127.0.0.1:4443", "WALE_GS_CHUNK_MIB": "0"]).contains("WALE_GS_CHUNK_MIB=0"))
        #expect(message(["WALE_GS_ENDPOINT": "ftp://x", "STORAGE_EMULATOR_HOST": "127.0.0.1:4443"]).contains("not an http"))
    }

    @Test func serviceAccountJWTIsSignedForGooglesTokenEndpoint() throws {
        let jwt = try GCSAuthenticator.assertion(
            email: "a@p.iam.gserviceaccount.com", pem: Self.key.pemRepresentation, keyID: "k1",
            audience: GCSConfiguration.defaultTokenURI, now: 1_700_000_000.7)
        let parts = jwt.split(separator: ".").map(String.init)
        #expect(parts.count == 3)
        func decode(_ s: String) -> Data {
            var b = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
            while b.count % 4 != 0 { b += "=" }
            return Data(base64Encoded: b)!
        }
        let header = try JSONSerialization.jsonObject(with: decode(parts[0])) as! [String: Any]
        let claims = try JSONSerialization.jsonObject(with: decode(parts[1])) as! [String: Any]
        #expect(header["alg"] as? String == "RS256" && header["kid"] as? String == "k1")
        #expect(claims["aud"] as? String == "https://oauth2.googleapis.com/token")
        #expect(claims["iss"] as? String == "a@p.iam.gserviceaccount.com")
        #expect((claims["scope"] as? String)?.contains("devstorage.read_write") == true)
        #expect(claims["iat"] as? Int == 1_700_000_000 && claims["exp"] as? Int == 1_700_003_600)
        let signature = _RSA.Signing.RSASignature(rawRepresentation: decode(parts[2]))
        let input = Data((parts[0] + "." + parts[1]).utf8)
        #expect(Self.key.publicKey.isValidSignature(signature, for: input, padding: .insecurePKCS1v1_5))
        #expect(!Self.key.publicKey.isValidSignature(signature, for: Data((parts[0] + "." + parts[1] + "x").utf8), padding: .insecurePKCS1v1_5))
    }

    @Test func namesCarryWALEsLeadingSlash() {
        #expect(WALENames.name("pg/wal_005/X.lzo") == "/pg/wal_005/X.lzo")
    }
}
