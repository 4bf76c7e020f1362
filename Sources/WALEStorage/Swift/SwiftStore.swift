import AsyncHTTPClient
import Crypto
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import WALECodec
import WALECore

/// The `swift://` backend: OpenStack Swift's object API with a token from v1 auth or Keystone
/// (cached, renewed before it expires, one re-authentication when Swift answers 401), on the
/// shared HTTP core and parted-upload driver.
///
/// Object names are WAL-E's: the key with a leading `/`. An object that fits one part is one PUT
/// with its MD5 as `ETag` (Swift checks it); a larger one is a Static Large Object: segments in
/// `CONTAINER_segments` (python-swiftclient's convention) named `KEY/UPLOAD/00000001`, then the
/// manifest PUT, which carries the metadata known only at the end. `If-None-Match: *` makes WAL
/// create-only. Deleting an object deletes its segments with it.
public struct SwiftStore: PartedUploadTarget {
    public let config: SwiftConfiguration
    let core: HTTPCore
    let budget: ByteBudget
    let tokens: TokenCache<SwiftSession>
    var partSize: Int { config.partSize }
    var partsInFlight: Int { config.partsInFlight }
    var target: String { "swift://\(config.container)" }

    public init(config: SwiftConfiguration, logger: Logger, retry: RetryPolicy) throws {
        self.config = config
        core = try HTTPCore(
            service: "Swift", endpoint: config.authURL, caBundle: config.caBundle, caVariable: "WALE_SWIFT_CA_BUNDLE", limits: config.limits,
            retry: retry, logger: logger)
        budget = ByteBudget(capacity: config.uploadMemory)
        let auth = SwiftAuthenticator(config: config, core: core)
        tokens = TokenCache(margin: 60) {
            let s = try await auth.authenticate()
            logger.debug("authenticated to Swift (auth v\(config.authVersion.rawValue))", detail: "storage URL \(s.value.storageURL)")
            return s
        }
    }

    typealias Response = HTTPCore.Response

    /// Swift said 401 to a token: it is fetched again once.
    struct TokenRefused: Error { let session: SwiftSession }

    func request(
        _ session: SwiftSession, _ method: HTTPMethod, container: String?, name: String?, query: [(String, String)], headers: [(String, String)],
        body: (any RequestBody)?, handle: BodyHandle
    ) -> HTTPClientRequest {
        var url = session.storageURL + "/" + percentEncode(container ?? config.container, keepSlash: false)
        if let name { url += "/" + percentEncode(name, keepSlash: true) }
        var r = HTTPClientRequest(url: url + queryString(query))
        r.method = method
        r.headers.add(name: "X-Auth-Token", value: session.token)
        for (k, v) in headers { r.headers.add(name: k, value: v) }
        if let body { core.attach(body, to: &r, handle: handle) }
        return r
    }

    /// Runs `attempt` with the cached token; when Swift refuses it (401), once more with a new one.
    func withToken<R>(_ what: String, _ attempt: @escaping @Sendable (SwiftSession) async throws -> R) async throws -> R {
        do {
            return try await attempt(try await tokens.value())
        } catch let refused as TokenRefused {
            core.logger.info("Swift refused the token for \(what); authenticating again")
            await tokens.invalidate(ifStill: refused.session)
            do {
                return try await attempt(try await tokens.value())
            } catch is TokenRefused {
                throw WALEError(
                    .user, "Swift refused a fresh token for \(what) on \(target)",
                    hint: "the user may lack access to the container; check SWIFT_TENANT / the project and the container's ACLs")
            }
        }
    }

    /// A small request and its whole answer, retried by the core's policy.
    func send(
        _ method: HTTPMethod, container: String? = nil, name: String?, query: [(String, String)] = [], headers: [(String, String)] = [],
        body: (any RequestBody)? = nil, what: String
    ) async throws -> Response {
        try await withToken(what) { session in
            try await core.send(what) { handle in
                request(session, method, container: container, name: name, query: query, headers: headers, body: body, handle: handle)
            } check: { r in
                if r.status == 401 { throw TokenRefused(session: session) }
                // 422: the body did not match its ETag, so it was damaged on the way.
                if HTTPCore.isTransientStatus(r.status) || r.status == 422 {
                    throw WALEError(.io, "Swift answered \(r.status) to \(what)", detail: message(r))
                }
            }
        }
    }

    func message(_ r: Response) -> String? {
        let s = String(decoding: r.body.prefix(300), as: UTF8.self)
        return s.isEmpty ? nil : s
    }

    /// A clear error for a refused request: names the container and object, never the token.
    func failure(_ r: Response, _ what: String, key: String?) -> WALEError {
        switch r.status {
        case 403:
            return WALEError(.user, "access denied to \(target)/\(key ?? "")", detail: what, hint: "the Swift user needs read, write, list and delete on the container")
        case 404:
            return WALEError(.user, "the container \(config.container) does not exist", detail: what, hint: "create it, or fix the prefix")
        default:
            return WALEError(.io, "Swift refused \(what) on \(target)/\(key ?? ""): HTTP \(r.status)", detail: message(r))
        }
    }

    // MARK: ObjectStore

    public var storesLateMetadata: Bool { true }

    public func info(_ key: String) async throws -> ObjectInfo? {
        let r = try await send(.HEAD, name: SwiftConfiguration.objectName(key), what: "HEAD \(key)")
        if r.status == 404 { return nil }
        guard r.status / 100 == 2 else { throw failure(r, "HEAD \(key)", key: key) }
        let meta = HTTPCore.userMetadata(r.headers, prefix: "x-object-meta-")
        return ObjectInfo(
            key: key, size: Int64(r.headers.first(name: "content-length") ?? "0") ?? 0,
            lastModified: r.headers.first(name: "last-modified").flatMap(parseHTTPDate) ?? 0, metadata: meta)
    }

    public func read<R>(_ key: String, _ body: (any ByteSource) async throws -> R) async throws -> R {
        try await core.read(
            "GET \(target)/\(key)", metadata: { HTTPCore.userMetadata($0, prefix: "x-object-meta-") }, get: { range in try await get(key, range: range) },
            body)
    }

    func get(_ key: String, range: [(String, String)]) async throws -> HTTPClientResponse {
        let what = "GET \(key)"
        return try await withToken(what) { session in
            try await core.open(what) { handle in
                request(session, .GET, container: nil, name: SwiftConfiguration.objectName(key), query: [], headers: range, body: nil, handle: handle)
            } refuse: { r in
                if r.status == 401 { throw TokenRefused(session: session) }
                if r.status == 404 {
                    // Swift says 404 for a missing container too: that is a configuration error,
                    // and wal-fetch must not tell PostgreSQL that the archive ends here.
                    let c = try await send(.HEAD, name: nil, what: "HEAD container \(config.container)")
                    if c.status == 404 { throw failure(c, what, key: key) }
                    throw WALEError(.notFound, "object \(key) does not exist", detail: "\(target)/\(key)")
                }
                if HTTPCore.isTransientStatus(r.status) { throw WALEError(.io, "Swift answered \(r.status) to \(what)") }
                throw failure(r, what, key: key)
            }
        }
    }

    public func write(_ key: String, from source: any ByteSource, options: WriteOptions) async throws -> WriteOutcome {
        try await partedWrite(key, from: source, options: options)
    }

    func objectHeaders(_ options: WriteOptions, metadata: [String: String]) -> [(String, String)] {
        var h: [(String, String)] = [("Content-Type", options.contentType ?? "application/octet-stream")]
        for (k, v) in metadata.sorted(by: { $0.key < $1.key }) { h.append(("X-Object-Meta-" + k, v)) }
        if options.ifAbsent { h.append(("If-None-Match", "*")) }
        return h
    }

    /// A PUT's answer. 202 Accepted: the object servers already hold a write of this name with the
    /// same or a newer timestamp (a concurrent writer's), so ours was not applied: under if-absent
    /// that is "already exists" (the caller compares); otherwise the concurrent write simply won,
    /// as the later of two overwrites does on every store.
    func outcome(_ r: Response, _ what: String, key: String, ifAbsent: Bool) throws -> WriteOutcome {
        if r.status == 412 || (r.status == 202 && ifAbsent) { return .alreadyExists }
        guard r.status == 201 || r.status == 202 else { throw failure(r, what, key: key) }
        return .created
    }

    func putWhole(_ key: String, _ body: any RequestBody, metadata: [String: String], options: WriteOptions) async throws -> WriteOutcome {
        let h = try objectHeaders(options, metadata: metadata) + [("ETag", md5Hex(body))]
        let r = try await send(.PUT, name: SwiftConfiguration.objectName(key), headers: h, body: body, what: "PUT \(key)")
        return try outcome(r, "PUT \(key)", key: key, ifAbsent: options.ifAbsent)
    }

    func begin(_ key: String, options: WriteOptions) async throws -> LargeObject {
        let made = try await send(.PUT, container: config.segmentContainer, name: nil, body: ByteBuffer(), what: "PUT container \(config.segmentContainer)")
        guard made.status == 201 || made.status == 202 else { throw failure(made, "PUT container \(config.segmentContainer)", key: nil) }
        let upload = hexString((0..<8).map { _ in UInt8.random(in: 0...255) })
        return LargeObject(store: self, key: key, segmentPrefix: "\(key)/\(upload)/", options: options)
    }

    /// One Static Large Object upload.
    struct LargeObject: PartSession {
        let store: SwiftStore
        let key: String
        let segmentPrefix: String
        let options: WriteOptions

        struct Part: Sendable {
            var name: String
            var etag: String
            var size: Int
        }

        func put(part n: Int, _ body: ByteBuffer) async throws -> Part {
            let name = segmentPrefix + zeroPadded(n, 8)
            let etag = try md5Hex(body)
            let what = "PUT segment \(n) of \(key)"
            let r = try await store.send(
                .PUT, container: store.config.segmentContainer, name: name, headers: [("ETag", etag)], body: body, what: what)
            guard r.status == 201 else { throw store.failure(r, what, key: key) }
            return Part(name: name, etag: etag, size: body.readableBytes)
        }

        func commit(_ parts: [Part], metadata: [String: String]) async throws -> WriteOutcome {
            let manifest = JSON.array(parts.map { p in
                .object([
                    ("path", .string("/\(store.config.segmentContainer)/\(p.name)")), ("etag", .string(p.etag)), ("size_bytes", .int(Int64(p.size))),
                ])
            })
            let what = "PUT manifest \(key)"
            let r = try await store.send(
                .PUT, name: SwiftConfiguration.objectName(key), query: [("multipart-manifest", "put")],
                headers: store.objectHeaders(options, metadata: metadata), body: ByteBuffer(string: manifest.serialized()), what: what)
            let outcome = try store.outcome(r, what, key: key, ifAbsent: options.ifAbsent)
            if outcome == .alreadyExists { await abort() }
            return outcome
        }

        /// Deletes this upload's segments.
        func abort() async {
            guard let names = try? await store.listNames(container: store.config.segmentContainer, prefix: segmentPrefix) else { return }
            try? await store.deleteSegments(names.map(\.key))
        }
    }

    /// Deletes segments from the segment container (gone already is fine).
    func deleteSegments(_ names: [String]) async throws {
        try await deleteEach(names, service: "Swift") { name in
            let r = try await send(.DELETE, container: config.segmentContainer, name: name, what: "DELETE segment \(name)")
            return r.status / 100 == 2 || r.status == 404 ? nil : "HTTP \(r.status)"
        }
    }

    /// Segments under `prefix` (`KEY/UPLOAD/n` in the segment container) whose upload was last
    /// written before the cut-off and that no manifest refers to (the manifest at KEY is missing,
    /// or names another upload's segments), deleted.
    public func sweepAbandonedUploads(prefix: String, olderThan: Double, now: Double) async throws -> Int {
        var uploads: [String: (names: [String], newest: Double)] = [:]
        for o in try await listNames(container: config.segmentContainer, prefix: prefix) {
            // Only segments named as wal-e names them (`KEY/<16 hex>/<8 digits>`): another tool's
            // segments in the same container (swiftclient's `NAME/slo/...`) are not ours to judge.
            let parts = o.key.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count >= 3, let n = parts.last, n.count == 8, n.allSatisfy(\.isNumber),
                parts[parts.count - 2].count == 16, parts[parts.count - 2].allSatisfy(\.isHexDigit),
                let slash = o.key.lastIndex(of: "/")
            else { continue }
            let upload = String(o.key[..<slash])
            uploads[upload, default: ([], 0)].names.append(o.key)
            uploads[upload]!.newest = max(uploads[upload]!.newest, o.lastModified)
        }
        var removed = 0
        for (upload, u) in uploads.sorted(by: { $0.key < $1.key }) where u.newest < now - olderThan {
            guard let slash = upload.lastIndex(of: "/") else { continue }
            let key = String(upload[..<slash])
            // Only a large object's manifest (small: a list of segment paths) is read; a plain
            // object or none at all refers to no segment.
            let head = try await send(.HEAD, name: SwiftConfiguration.objectName(key), what: "HEAD \(key)")
            guard head.status / 100 == 2 || head.status == 404 else { throw failure(head, "HEAD \(key)", key: key) }
            if head.status / 100 == 2 && head.headers.first(name: "x-static-large-object")?.lowercased() == "true" {
                let what = "GET manifest \(key)"
                let m = try await send(.GET, name: SwiftConfiguration.objectName(key), query: [("multipart-manifest", "get")], what: what)
                guard m.status / 100 == 2 else { throw failure(m, what, key: key) }
                if String(decoding: m.body, as: UTF8.self).contains("/\(config.segmentContainer)/\(upload)/") { continue }
            }
            try await deleteSegments(u.names)
            removed += 1
        }
        return removed
    }

    /// A container's objects whose names start with `prefix`, in name order, every page.
    func listNames(container: String? = nil, prefix: String) async throws -> [ObjectInfo] {
        let limit = config.listPageSize ?? 10_000
        return try await listAllPages { marker in
            var q: [(String, String)] = [("format", "json"), ("limit", String(limit)), ("prefix", prefix)]
            if let marker { q.append(("marker", marker)) }
            let what = "list \(container ?? config.container) \(prefix)"
            let r = try await send(.GET, container: container, name: nil, query: q, what: what)
            if r.status == 404 && container != nil { return ([], nil) }
            guard r.status == 200 || r.status == 204 else { throw failure(r, what, key: prefix) }
            let rows: [JSON]
            do {
                rows = r.body.isEmpty ? [] : try JSON.parse(String(decoding: r.body, as: UTF8.self)).array ?? []
            } catch {
                throw WALEError(.io, "Swift's listing of \(target) is not JSON wal-e can read", detail: "\(error)")
            }
            let objects = rows.compactMap { row -> ObjectInfo? in
                guard let name = row["name"]?.string else { return nil }
                let modified = row["last_modified"]?.string
                return ObjectInfo(
                    key: name, size: row["bytes"]?.int ?? 0, lastModified: modified.flatMap { parseKeystoneTime($0) } ?? 0,
                    lastModifiedText: modified)
            }
            return (objects, rows.count >= limit ? objects.last?.key : nil)
        }
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        try await listNames(prefix: SwiftConfiguration.objectName(prefix)).map { o in
            var o = o
            o.key = SwiftConfiguration.key(o.key)
            return o
        }
    }

    /// Each object with its segments (`multipart-manifest=delete`), or plainly when it is not a
    /// large object; a missing object is not an error.
    public func delete(_ keys: [String]) async throws {
        try await deleteEach(keys, service: "Swift") { key in
            let name = SwiftConfiguration.objectName(key)
            let r = try await send(
                .DELETE, name: name, query: [("multipart-manifest", "delete")], headers: [("Accept", "application/json")], what: "DELETE \(key)")
            if r.status == 404 { return nil }
            guard r.status / 100 == 2 else { return "HTTP \(r.status)" }
            let answer = try? JSON.parse(String(decoding: r.body, as: UTF8.self))
            let errors = answer?["Errors"]?.array ?? []
            if errors.isEmpty { return nil }
            guard errors.allSatisfy({ $0.array?.last?.string == "Not an SLO manifest" }) else {
                return errors.map { $0.serialized() }.joined(separator: ", ")
            }
            let plain = try await send(.DELETE, name: name, what: "DELETE \(key)")
            return plain.status / 100 == 2 || plain.status == 404 ? nil : "HTTP \(plain.status)"
        }
    }
}

func md5Hex(_ b: any RequestBody) throws -> String { hexString(try md5(b)) }
