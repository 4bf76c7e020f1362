import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import WALECore

/// Where the S3 credentials come from, in WAL-E's order: `--aws-instance-profile`, else
/// `-k`/`AWS_ACCESS_KEY_ID` with `AWS_SECRET_ACCESS_KEY`, else the shared credentials file.
public enum CredentialSource: Sendable, Equatable {
    /// Keys known up front (environment, `-k`, `~/.aws/credentials`).
    case fixed(AWSCredentials)
    /// The EC2 instance metadata service at this base URL (IMDSv2, falling back to v1).
    case instanceProfile(endpoint: String)
}

/// Credentials and the time (seconds since the epoch) they stop working, if they do.
public typealias ExpiringCredentials = Expiring<AWSCredentials>
/// Temporary AWS keys from the instance metadata service, renewed before they expire.
public typealias CredentialCache = TokenCache<AWSCredentials>

extension Expiring where Value == AWSCredentials {
    public init(credentials: AWSCredentials, expiration: Double?) { self.init(credentials, expiration: expiration) }
    public var credentials: AWSCredentials { value }
}

extension TokenCache where Value == AWSCredentials {
    public func credentials() async throws -> AWSCredentials { try await value() }
}

/// The EC2 instance metadata service: an IMDSv2 session token, the role attached to the
/// instance, then that role's temporary keys. `AWS_EC2_METADATA_SERVICE_ENDPOINT` moves it.
public struct InstanceMetadataClient: Sendable {
    public static let defaultEndpoint = "http://169.254.169.254"
    let endpoint: String
    let client: HTTPClient
    let timeout: TimeAmount

    public init(endpoint: String, client: HTTPClient, timeout: TimeAmount = .seconds(2)) {
        var e = endpoint
        while e.hasSuffix("/") { e.removeLast() }
        self.endpoint = e
        self.client = client
        self.timeout = timeout
    }

    func call(_ method: HTTPMethod, _ path: String, headers: [(String, String)]) async throws -> (Int, String) {
        var r = HTTPClientRequest(url: endpoint + path)
        r.method = method
        for (k, v) in headers { r.headers.add(name: k, value: v) }
        do {
            let resp = try await client.execute(r, timeout: timeout)
            var body: [UInt8] = []
            for try await var c in resp.body {
                body += c.readBytes(length: c.readableBytes) ?? []
                if body.count > 1 << 20 { break }
            }
            return (Int(resp.status.code), String(decoding: body, as: UTF8.self))
        } catch {
            throw WALEError(
                .io, "the EC2 instance metadata service at \(endpoint) did not answer", detail: "\(method) \(path): \(error)",
                hint: "--aws-instance-profile only works on an EC2 instance with an IAM role (or set AWS_EC2_METADATA_SERVICE_ENDPOINT)")
        }
    }

    public func fetch() async throws -> ExpiringCredentials {
        var auth: [(String, String)] = []
        let (tokenStatus, token) = try await call(.PUT, "/latest/api/token", headers: [("X-aws-ec2-metadata-token-ttl-seconds", "21600")])
        switch tokenStatus {
        case 200: auth = [("X-aws-ec2-metadata-token", token.trimmingWhitespace())]
        case 403: throw WALEError(.user, "the EC2 instance metadata service refused a session token (HTTP 403)", hint: "is IMDS disabled on this instance?")
        default: break  // IMDSv1 only (404/405 from older services)
        }
        let base = "/latest/meta-data/iam/security-credentials/"
        let (roleStatus, roles) = try await call(.GET, base, headers: auth)
        guard roleStatus == 200, let role = roles.split(whereSeparator: \.isNewline).first.map({ String($0).trimmingWhitespace() }),
            !role.isEmpty
        else {
            throw WALEError(
                .user, "no IAM role is attached to this instance (metadata answered \(roleStatus))",
                hint: "attach an instance profile with S3 access, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY instead")
        }
        let (credStatus, doc) = try await call(.GET, base + role, headers: auth)
        guard credStatus == 200 else {
            throw WALEError(.io, "the instance metadata service gave no credentials for role \(role) (HTTP \(credStatus))")
        }
        return try Self.parse(doc, role: role)
    }

    /// Parses the role document `{"Code": "Success", "AccessKeyId": …, "SecretAccessKey": …,
    /// "Token": …, "Expiration": "2026-11-21T12:00:00Z"}`.
    public static func parse(_ doc: String, role: String) throws(WALEError) -> ExpiringCredentials {
        let json: JSON
        do { json = try JSON.parse(doc) } catch {
            throw WALEError(.io, "the instance metadata credentials for role \(role) are not JSON", detail: error.description)
        }
        if let code = json["Code"]?.string, code != "Success" {
            throw WALEError(.io, "the instance metadata service reports \(code) for role \(role)", detail: json["Message"]?.string ?? "")
        }
        guard let key = json["AccessKeyId"]?.string, let secret = json["SecretAccessKey"]?.string, !key.isEmpty, !secret.isEmpty else {
            throw WALEError(.io, "the instance metadata credentials for role \(role) lack AccessKeyId or SecretAccessKey")
        }
        let token = json["Token"]?.string.flatMap { $0.isEmpty ? nil : $0 }
        let expiration = json["Expiration"]?.string.flatMap(parseISO8601)
        return ExpiringCredentials(credentials: AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: token), expiration: expiration)
    }
}

/// The AWS shared credentials and config files (INI): `[profile]` sections of `key = value`.
public enum SharedAWSFiles {
    public static func parseINI(_ text: String) -> [String: [String: String]] {
        var out: [String: [String: String]] = [:]
        var section: String?
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingWhitespace()
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                section = String(line.dropFirst().dropLast()).trimmingWhitespace()
                continue
            }
            guard let s = section, let eq = line.firstIndex(of: "=") else { continue }
            let k = String(line[..<eq]).trimmingWhitespace().lowercased()
            let v = String(line[line.index(after: eq)...]).trimmingWhitespace()
            out[s, default: [:]][k] = v
        }
        return out
    }

    /// The profile name: `AWS_PROFILE`, else `AWS_DEFAULT_PROFILE`, else `default`.
    public static func profile(_ env: [String: String]) -> (name: String, explicit: Bool) {
        for k in ["AWS_PROFILE", "AWS_DEFAULT_PROFILE"] { if let p = env[k], !p.isEmpty { return (p, true) } }
        return ("default", false)
    }

    static func home(_ env: [String: String]) -> String { env["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? "/" }

    public static func credentialsPath(_ env: [String: String]) -> String {
        env["AWS_SHARED_CREDENTIALS_FILE"].flatMap { $0.isEmpty ? nil : $0 } ?? home(env) + "/.aws/credentials"
    }

    public static func configPath(_ env: [String: String]) -> String {
        env["AWS_CONFIG_FILE"].flatMap { $0.isEmpty ? nil : $0 } ?? home(env) + "/.aws/config"
    }

    /// Keys of `profile` in the credentials file (or, as the AWS CLI allows, the config file).
    public static func credentials(profile: String, credentialsFile: String?, configFile: String?) -> AWSCredentials? {
        let candidates: [[String: String]?] = [
            credentialsFile.map(parseINI)?[profile],
            configFile.map(parseINI).flatMap { $0[profile == "default" ? "default" : "profile \(profile)"] },
        ]
        for case let s? in candidates {
            if let k = s["aws_access_key_id"], let sk = s["aws_secret_access_key"], !k.isEmpty, !sk.isEmpty {
                return AWSCredentials(accessKeyID: k, secretAccessKey: sk, sessionToken: s["aws_session_token"].flatMap { $0.isEmpty ? nil : $0 })
            }
        }
        return nil
    }

    /// `region` of `profile` in the config file.
    public static func region(profile: String, configFile: String?) -> String? {
        configFile.map(parseINI).flatMap { $0[profile == "default" ? "default" : "profile \(profile)"]?["region"] }
    }
}
