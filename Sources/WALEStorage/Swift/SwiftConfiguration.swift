import WALECore

/// `swift://CONTAINER/PATH` with WAL-E's environment (python-swiftclient's `Connection`):
/// `SWIFT_AUTHURL`, `SWIFT_USER`, `SWIFT_PASSWORD` (environment only), `SWIFT_TENANT`,
/// `SWIFT_AUTH_VERSION` (1, 2 or 3; default 2), `SWIFT_REGION`, `SWIFT_ENDPOINT_TYPE` (default
/// publicURL) and Keystone v3's domain, project and user ids and names.
public struct SwiftConfiguration: Sendable {
    public enum AuthVersion: String, Sendable { case v1 = "1", v2 = "2", v3 = "3" }

    public var container: String
    public var authURL: String
    public var user: String
    public var password: String
    public var authVersion: AuthVersion
    public var tenant: String?
    public var region: String?
    public var endpointType = "publicURL"
    /// Keystone v3 (and v2's tenant id): `domain_id`, `domain_name`, `tenant_id`, `user_id`,
    /// `user_domain_id`, `user_domain_name`, `project_id`, `project_name`, `project_domain_id`,
    /// `project_domain_name`, as swiftclient's os_options name them.
    public var options: [String: String] = [:]
    public var caBundle: String?
    /// Segment size of a Static Large Object (and the size above which one is made).
    public var partSize = 8 << 20
    public var partsInFlight = 4
    public var uploadMemory = 32 << 20
    /// Objects per listing page (Swift's default and maximum is 10,000).
    public var listPageSize: Int?
    public var limits = TransferLimits()

    /// The container the segments of large objects go to (python-swiftclient's convention).
    public var segmentContainer: String { container + "_segments" }

    static let optionVariables: [(String, String)] = [
        ("SWIFT_DOMAIN_ID", "domain_id"), ("SWIFT_DOMAIN_NAME", "domain_name"), ("SWIFT_TENANT_ID", "tenant_id"),
        ("SWIFT_USER_ID", "user_id"), ("SWIFT_USER_DOMAIN_ID", "user_domain_id"), ("SWIFT_USER_DOMAIN_NAME", "user_domain_name"),
        ("SWIFT_PROJECT_ID", "project_id"), ("SWIFT_PROJECT_NAME", "project_name"), ("SWIFT_PROJECT_DOMAIN_ID", "project_domain_id"),
        ("SWIFT_PROJECT_DOMAIN_NAME", "project_domain_name"),
    ]

    public static func resolve(container: String, env: [String: String]) throws(WALEError) -> SwiftConfiguration {
        func value(_ k: String) -> String? { env[k].flatMap { $0.isEmpty ? nil : $0 } }
        guard let authURL = value("SWIFT_AUTHURL") else {
            throw WALEError(.user, "SWIFT_AUTHURL is not set", hint: "set it to the Swift or Keystone auth URL, e.g. https://keystone.example:5000/v3")
        }
        guard authURL.hasPrefix("http://") || authURL.hasPrefix("https://"), authURL.count > 8, !authURL.utf8.contains(where: { $0 <= 32 }) else {
            throw WALEError(.user, "SWIFT_AUTHURL=\(authURL) is not an http:// or https:// URL")
        }
        guard let user = value("SWIFT_USER") ?? value("SWIFT_USER_ID") else {
            throw WALEError(.user, "SWIFT_USER is not set", hint: "set SWIFT_USER and SWIFT_PASSWORD")
        }
        guard let password = value("SWIFT_PASSWORD") else {
            throw WALEError(.user, "SWIFT_PASSWORD is not set", hint: "the password (or TempAuth key) comes from the environment only")
        }
        let versionText = value("SWIFT_AUTH_VERSION") ?? "2"
        guard let version = AuthVersion(rawValue: versionText.hasPrefix("v") ? String(versionText.dropFirst()) : versionText) else {
            throw WALEError(.user, "SWIFT_AUTH_VERSION=\(versionText) is not 1, 2 or 3")
        }
        var c = SwiftConfiguration(container: container, authURL: authURL, user: user, password: password, authVersion: version)
        c.tenant = value("SWIFT_TENANT")
        c.region = value("SWIFT_REGION")
        if let t = value("SWIFT_ENDPOINT_TYPE") {
            guard ["publicURL", "internalURL", "adminURL", "public", "internal", "admin"].contains(t) else {
                throw WALEError(.user, "SWIFT_ENDPOINT_TYPE=\(t) is not publicURL, internalURL or adminURL")
            }
            c.endpointType = t
        }
        for (variable, key) in optionVariables { if let v = value(variable) { c.options[key] = v } }
        c.caBundle = value("WALE_SWIFT_CA_BUNDLE") ?? value("OS_CACERT")
        if let ca = c.caBundle, POSIX.readSmallFile(ca, limit: 16 << 20) == nil {
            throw WALEError(.user, "the CA bundle \(ca) cannot be read", hint: "WALE_SWIFT_CA_BUNDLE must name a readable PEM file")
        }
        if let m = value("WALE_SWIFT_SEGMENT_MIB") {
            guard let v = Int(m), v >= 1, v <= 1024 else { throw WALEError(.user, "WALE_SWIFT_SEGMENT_MIB=\(m) is not a whole number from 1 to 1024") }
            c.partSize = v << 20
            c.uploadMemory = max(c.uploadMemory, 4 * c.partSize)
        }
        c.limits = try TransferLimits.resolve(env: env, timeoutVariable: "WALE_SWIFT_REQUEST_TIMEOUT")
        return c
    }

    /// The object name of a key: WAL-E's Swift names start with `/` (§1.3).
    static func objectName(_ key: String) -> String { WALENames.name(key) }

    /// The key of an object name (names without the leading `/` are not WAL-E's and are kept as they are).
    static func key(_ name: String) -> String { WALENames.key(name) }
}
