import WALECore
import _CryptoExtras

/// `gs://BUCKET/PATH` with the credentials Google's libraries find (`google.auth.default()`, what
/// WAL-E used): `GOOGLE_APPLICATION_CREDENTIALS` (a service account key or an authorized-user
/// file), else gcloud's application default credentials file, else the metadata server of the
/// instance. `STORAGE_EMULATOR_HOST` (the SDKs' emulator variable) or `WALE_GS_ENDPOINT` point at
/// another endpoint; with the emulator variable and no credentials file, requests are anonymous.
public struct GCSConfiguration: Sendable {
    public enum Credentials: Sendable, Equatable {
        /// No Authorization header (an emulator).
        case anonymous
        /// A service account key: a JWT signed with its RSA key is exchanged for an access token.
        case serviceAccount(email: String, privateKeyPEM: String, keyID: String?, tokenURI: String)
        /// A user's refresh token (`gcloud auth application-default login`).
        case authorizedUser(clientID: String, clientSecret: String, refreshToken: String, tokenURI: String)
        /// The instance's service account, from the metadata server at this host.
        case metadata(host: String)
    }

    public var bucket: String
    /// `https://storage.googleapis.com`, no trailing slash.
    public var endpoint: String
    public var credentials: Credentials
    /// Where the credentials came from, for messages (a file path or "the metadata server").
    public var credentialsSource: String
    public var caBundle: String?
    /// Bytes per chunk of a resumable upload (a multiple of 256 KiB, as GCS requires) and the size
    /// above which an object is uploaded in chunks rather than in one request.
    public var partSize = 8 << 20
    /// A resumable upload's chunks go one after the other.
    public var partsInFlight = 1
    public var uploadMemory = 16 << 20
    public var listPageSize: Int?
    public var limits = TransferLimits()

    static let defaultTokenURI = "https://oauth2.googleapis.com/token"

    public static func resolve(bucket: String, env: [String: String]) throws(WALEError) -> GCSConfiguration {
        func value(_ k: String) -> String? { env[k].flatMap { $0.isEmpty ? nil : $0 } }
        let emulator = value("STORAGE_EMULATOR_HOST").map { $0.hasPrefix("http://") || $0.hasPrefix("https://") ? $0 : "http://" + $0 }
        var endpoint = value("WALE_GS_ENDPOINT") ?? emulator ?? "https://storage.googleapis.com"
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        guard endpoint.hasPrefix("http://") || endpoint.hasPrefix("https://"), endpoint.count > 8, !endpoint.utf8.contains(where: { $0 <= 32 }) else {
            throw WALEError(.user, "the GCS endpoint \(endpoint) is not an http:// or https:// URL", hint: "fix WALE_GS_ENDPOINT or STORAGE_EMULATOR_HOST")
        }
        let (credentials, source) = try findCredentials(env: env, emulator: emulator != nil)
        var c = GCSConfiguration(bucket: bucket, endpoint: endpoint, credentials: credentials, credentialsSource: source)
        c.caBundle = value("WALE_GS_CA_BUNDLE")
        if let ca = c.caBundle, POSIX.readSmallFile(ca, limit: 16 << 20) == nil {
            throw WALEError(.user, "the CA bundle \(ca) cannot be read", hint: "WALE_GS_CA_BUNDLE must name a readable PEM file")
        }
        if let m = value("WALE_GS_CHUNK_MIB") {
            guard let v = Int(m), v >= 1, v <= 1024 else { throw WALEError(.user, "WALE_GS_CHUNK_MIB=\(m) is not a whole number from 1 to 1024") }
            c.partSize = v << 20
            c.uploadMemory = max(c.uploadMemory, 2 * c.partSize)
        }
        c.limits = try TransferLimits.resolve(env: env, timeoutVariable: "WALE_GS_REQUEST_TIMEOUT")
        return c
    }

    /// google.auth.default()'s order, without the parts that need a network outside the host:
    /// the metadata server is only asked when nothing else is configured.
    static func findCredentials(env: [String: String], emulator: Bool) throws(WALEError) -> (Credentials, String) {
        func value(_ k: String) -> String? { env[k].flatMap { $0.isEmpty ? nil : $0 } }
        if let path = value("GOOGLE_APPLICATION_CREDENTIALS") {
            guard let bytes = POSIX.readSmallFile(path, limit: 1 << 20) else {
                throw WALEError(.user, "GOOGLE_APPLICATION_CREDENTIALS=\(path) cannot be read", hint: "it must name the JSON key file of a service account")
            }
            return (try parseCredentials(bytes, path: path), path)
        }
        if emulator { return (.anonymous, "none (STORAGE_EMULATOR_HOST)") }
        if let home = value("HOME") {
            let adc = (value("CLOUDSDK_CONFIG") ?? home + "/.config/gcloud") + "/application_default_credentials.json"
            if let bytes = POSIX.readSmallFile(adc, limit: 1 << 20) { return (try parseCredentials(bytes, path: adc), adc) }
        }
        // The link-local address rather than metadata.google.internal: no DNS lookup off a GCE host.
        let host = value("GCE_METADATA_HOST") ?? "169.254.169.254"
        return (.metadata(host: host), "the metadata server at \(host)")
    }

    /// A credentials file's contents. Messages name the file and the field, never a value.
    static func parseCredentials(_ text: String, path: String) throws(WALEError) -> Credentials {
        let json: JSON
        do { json = try JSON.parse(text) } catch {
            throw WALEError(.user, "the Google credentials file \(path) is not JSON", hint: "download a service account key (JSON) from the Cloud console")
        }
        func field(_ name: String) throws(WALEError) -> String {
            guard let v = json[name]?.string, !v.isEmpty else {
                throw WALEError(.user, "the Google credentials file \(path) has no \(name)", hint: "it must be a service account key or an authorized-user file")
            }
            return v
        }
        let tokenURI = json["token_uri"]?.string ?? defaultTokenURI
        switch json["type"]?.string {
        case "service_account":
            let email = try field("client_email")
            let pem = try field("private_key")
            do { _ = try _RSA.Signing.PrivateKey(pemRepresentation: pem) } catch {
                throw WALEError(.user, "the private_key in \(path) is not an RSA private key in PEM form (2048 bits or more)")
            }
            return .serviceAccount(email: email, privateKeyPEM: pem, keyID: json["private_key_id"]?.string, tokenURI: tokenURI)
        case "authorized_user":
            return .authorizedUser(
                clientID: try field("client_id"), clientSecret: try field("client_secret"), refreshToken: try field("refresh_token"), tokenURI: tokenURI)
        case let other:
            throw WALEError(
                .user, "the Google credentials file \(path) is of type \(other ?? "(none)")",
                hint: "wal-e reads service_account and authorized_user files")
        }
    }
}
