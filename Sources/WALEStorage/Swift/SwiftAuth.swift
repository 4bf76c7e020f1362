import AsyncHTTPClient
import NIOCore
import NIOHTTP1
import WALECore

/// A token and the storage URL it is good for.
struct SwiftSession: Sendable, Equatable {
    var token: String
    /// `https://host/v1/AUTH_project`, no trailing slash.
    var storageURL: String
}

/// Swift's three ways to a token, as python-swiftclient does them: v1 (TempAuth, SoftLayer:
/// `X-Auth-User`/`X-Auth-Key`, the storage URL in `X-Storage-Url`), Keystone v2 (`/tokens`,
/// password credentials and a tenant, the URL from the service catalog) and v3 (`/auth/tokens`,
/// the password method with user and project scope, the token in `X-Subject-Token`).
struct SwiftAuthenticator: Sendable {
    let config: SwiftConfiguration
    let core: HTTPCore

    func authenticate() async throws -> Expiring<SwiftSession> {
        switch config.authVersion {
        case .v1: return try await v1()
        case .v2: return try await keystone(url: join(config.authURL, "tokens"), body: v2Body(), v3: false)
        case .v3: return try await keystone(url: join(config.authURL, "auth/tokens"), body: v3Body(), v3: true)
        }
    }

    func join(_ base: String, _ tail: String) -> String {
        var b = base
        while b.hasSuffix("/") { b.removeLast() }
        return b.hasSuffix("/" + tail) ? b : b + "/" + tail
    }

    func rejected(_ r: HTTPCore.Response) -> WALEError {
        if r.status == 401 || r.status == 403 {
            return WALEError(
                .user, "Swift authentication at \(config.authURL) refused SWIFT_USER \(config.user) (HTTP \(r.status))",
                hint: "check SWIFT_USER, SWIFT_PASSWORD, SWIFT_TENANT and SWIFT_AUTH_VERSION (\(config.authVersion.rawValue))")
        }
        if r.status / 100 == 4 {
            return WALEError(
                .user, "Swift authentication URL \(config.authURL) answered \(r.status)",
                hint: "SWIFT_AUTHURL must be the auth endpoint of SWIFT_AUTH_VERSION \(config.authVersion.rawValue) (…/auth/v1.0, …/v2.0 or …/v3)")
        }
        return WALEError(.io, "Swift authentication at \(config.authURL) answered \(r.status)")
    }

    func send(_ method: HTTPMethod, url: String, headers: [(String, String)], body: String?) async throws -> HTTPCore.Response {
        try await core.send("authentication at \(config.authURL)") { handle in
            var r = HTTPClientRequest(url: url)
            r.method = method
            for (k, v) in headers { r.headers.add(name: k, value: v) }
            if let body {
                r.headers.add(name: "Content-Type", value: "application/json")
                core.attach(ByteBuffer(string: body), to: &r, handle: handle)
            }
            return r
        } check: { r in
            if HTTPCore.isTransientStatus(r.status) { throw WALEError(.io, "Swift authentication answered \(r.status)") }
        }
    }

    func v1() async throws -> Expiring<SwiftSession> {
        let r = try await send(.GET, url: config.authURL, headers: [("X-Auth-User", config.user), ("X-Auth-Key", config.password)], body: nil)
        guard r.status / 100 == 2 else { throw rejected(r) }
        guard let token = r.headers.first(name: "x-auth-token") ?? r.headers.first(name: "x-storage-token"),
            let url = r.headers.first(name: "x-storage-url")
        else { throw WALEError(.io, "the Swift v1 auth answer from \(config.authURL) has no token or storage URL") }
        let expires = r.headers.first(name: "x-auth-token-expires").flatMap(Double.init).map { POSIX.now() + $0 }
        return Expiring(SwiftSession(token: token, storageURL: trimmed(url)), expiration: expires)
    }

    func trimmed(_ url: String) -> String {
        var u = url
        while u.hasSuffix("/") { u.removeLast() }
        return u
    }

    func v2Body() -> String {
        var auth: [(String, JSON)] = [("passwordCredentials", .object([("username", .string(config.user)), ("password", .string(config.password))]))]
        if let id = config.options["tenant_id"] {
            auth.append(("tenantId", .string(id)))
        } else if let t = config.tenant {
            auth.append(("tenantName", .string(t)))
        }
        return JSON.object([("auth", .object(auth))]).serialized()
    }

    func v3Body() -> String {
        let o = config.options
        func domain(_ idKey: String, _ nameKey: String) -> JSON? {
            if let id = o[idKey] ?? o["domain_id"] { return .object([("id", .string(id))]) }
            if let name = o[nameKey] ?? o["domain_name"] { return .object([("name", .string(name))]) }
            return nil
        }
        var user: [(String, JSON)] = o["user_id"] != nil ? [("id", .string(o["user_id"]!))] : [("name", .string(config.user))]
        if o["user_id"] == nil { user.append(("domain", domain("user_domain_id", "user_domain_name") ?? .object([("id", .string("default"))]))) }
        user.append(("password", .string(config.password)))
        let identity: JSON = .object([("methods", .array([.string("password")])), ("password", .object([("user", .object(user))]))])
        var auth: [(String, JSON)] = [("identity", identity)]
        var project: [(String, JSON)]?
        if let id = o["project_id"] ?? o["tenant_id"] {
            project = [("id", .string(id))]
        } else if let name = o["project_name"] ?? config.tenant {
            project = [("name", .string(name)), ("domain", domain("project_domain_id", "project_domain_name") ?? .object([("id", .string("default"))]))]
        }
        if let project { auth.append(("scope", .object([("project", .object(project))]))) }
        return JSON.object([("auth", .object(auth))]).serialized()
    }

    func keystone(url: String, body: String, v3: Bool) async throws -> Expiring<SwiftSession> {
        let r = try await send(.POST, url: url, headers: [("Accept", "application/json")], body: body)
        guard r.status / 100 == 2 else { throw rejected(r) }
        let json: JSON
        do {
            json = try JSON.parse(String(decoding: r.body, as: UTF8.self))
        } catch {
            throw WALEError(.io, "Keystone at \(config.authURL) answered with JSON wal-e cannot read", detail: "\(error)")
        }
        let token: String?
        let expires: String?
        let catalog: [JSON]
        if v3 {
            token = r.headers.first(name: "x-subject-token")
            expires = json["token"]?["expires_at"]?.string
            catalog = json["token"]?["catalog"]?.array ?? []
        } else {
            token = json["access"]?["token"]?["id"]?.string
            expires = json["access"]?["token"]?["expires"]?.string
            catalog = json["access"]?["serviceCatalog"]?.array ?? []
        }
        guard let token else { throw WALEError(.io, "Keystone at \(config.authURL) answered without a token") }
        guard let storage = storageURL(catalog, v3: v3) else {
            throw WALEError(
                .user, "Keystone's catalog has no object-store endpoint of type \(config.endpointType)"
                    + (config.region.map { " in region \($0)" } ?? ""),
                hint: "check SWIFT_REGION and SWIFT_ENDPOINT_TYPE (and that the project has Swift)")
        }
        return Expiring(SwiftSession(token: token, storageURL: trimmed(storage)), expiration: expires.flatMap(parseKeystoneTime))
    }

    /// The object-store endpoint of the wanted type (and region, if set).
    func storageURL(_ catalog: [JSON], v3: Bool) -> String? {
        let wanted = config.endpointType.hasSuffix("URL") ? String(config.endpointType.dropLast(3)) : config.endpointType
        for service in catalog where service["type"]?.string == "object-store" {
            for e in service["endpoints"]?.array ?? [] {
                if let region = config.region, (e["region"]?.string ?? e["region_id"]?.string) != region { continue }
                if v3 {
                    if e["interface"]?.string == wanted, let url = e["url"]?.string { return url }
                } else if let url = e[wanted + "URL"]?.string {
                    return url
                }
            }
        }
        return nil
    }
}

/// Keystone's times: `2026-12-03T19:00:00Z`, `2026-12-03T19:00:00.000000Z`, or with `+00:00`.
func parseKeystoneTime(_ s: String) -> Double? {
    var t = s
    if t.hasSuffix("+00:00") { t = String(t.dropLast(6)) + "Z" }
    if !t.hasSuffix("Z") { t += "Z" }
    return parseISO8601(t)
}
