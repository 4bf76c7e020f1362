import AsyncHTTPClient
import Crypto
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import WALECodec
import WALECore

/// The `gs://` backend: Google Cloud Storage's JSON API with an OAuth2 access token (cached,
/// renewed before it expires, one new token when GCS answers 401), on the shared HTTP core and
/// parted-upload driver.
///
/// Object names are WAL-E's: the key with a leading `/`. An object that fits one chunk is one
/// multipart upload (metadata and media in one request, its MD5 and CRC32C declared so that GCS
/// refuses a damaged body); a larger one is a resumable upload: chunks one after the other, the
/// last one (or an empty final request) giving the total size. `ifGenerationMatch=0` makes WAL
/// create-only. Reads resume from the last good byte of the same generation.
public struct GCSStore: PartedUploadTarget {
    public let config: GCSConfiguration
    let core: HTTPCore
    let budget: ByteBudget
    let tokens: TokenCache<String>
    var partSize: Int { config.partSize }
    var partsInFlight: Int { config.partsInFlight }
    var target: String { "gs://\(config.bucket)" }

    public init(config: GCSConfiguration, logger: Logger, retry: RetryPolicy) throws {
        self.config = config
        core = try HTTPCore(
            service: "GCS", endpoint: config.endpoint, caBundle: config.caBundle, caVariable: "WALE_GS_CA_BUNDLE", limits: config.limits,
            retry: retry, logger: logger)
        budget = ByteBudget(capacity: config.uploadMemory)
        let auth = GCSAuthenticator(config: config, core: core)
        tokens = TokenCache(margin: 300) {
            let t = try await auth.token()
            logger.debug("got a GCS access token", detail: "from \(config.credentialsSource)")
            return t
        }
    }

    typealias Response = HTTPCore.Response

    /// GCS said 401 to a token: a new one is fetched once.
    struct TokenRefused: Error { let token: String }

    var bucketURL: String { config.endpoint + "/storage/v1/b/" + percentEncode(config.bucket, keepSlash: false) }
    func objectURL(_ key: String) -> String { bucketURL + "/o/" + percentEncode(WALENames.name(key), keepSlash: false) }
    var uploadURL: String { config.endpoint + "/upload/storage/v1/b/" + percentEncode(config.bucket, keepSlash: false) + "/o" }

    func request(_ token: String, _ method: HTTPMethod, url: String, headers: [(String, String)], body: (any RequestBody)?, handle: BodyHandle) -> HTTPClientRequest {
        var r = HTTPClientRequest(url: url)
        r.method = method
        if !token.isEmpty { r.headers.add(name: "Authorization", value: "Bearer " + token) }
        for (k, v) in headers { r.headers.add(name: k, value: v) }
        if let body = body ?? (method == .PUT || method == .POST ? ByteBuffer() : nil) { core.attach(body, to: &r, handle: handle) }
        return r
    }

    /// Runs `attempt` with the cached token; when GCS refuses it (401), once more with a new one.
    func withToken<R>(_ what: String, _ attempt: @escaping @Sendable (String) async throws -> R) async throws -> R {
        do {
            return try await attempt(try await tokens.value())
        } catch let refused as TokenRefused {
            core.logger.info("GCS refused the access token for \(what); getting a new one")
            await tokens.invalidate(ifStill: refused.token)
            do {
                return try await attempt(try await tokens.value())
            } catch is TokenRefused {
                throw WALEError(
                    .user, "GCS refused a fresh access token for \(what) on \(target)",
                    hint: "check the credentials in \(config.credentialsSource) (GOOGLE_APPLICATION_CREDENTIALS)")
            }
        }
    }

    /// A small request and its whole answer, retried by the core's policy.
    func send(_ method: HTTPMethod, url: String, headers: [(String, String)] = [], body: (any RequestBody)? = nil, what: String) async throws -> Response {
        try await withToken(what) { token in
            try await core.send(what) { handle in
                request(token, method, url: url, headers: headers, body: body, handle: handle)
            } check: { r in try check(r, token: token, what: what) }
        }
    }

    func check(_ r: Response, token: String, what: String) throws {
        if r.status == 401 { throw TokenRefused(token: token) }
        // 400 naming a hash: the body did not match its declared MD5 or CRC32C, so it was damaged on the way.
        if HTTPCore.isTransientStatus(r.status) || r.status == 408 || (r.status == 400 && (message(r) ?? "").lowercased().contains("hash")) {
            throw WALEError(.io, "GCS answered \(r.status) to \(what)", detail: message(r))
        }
    }

    func message(_ r: Response) -> String? {
        if let json = try? JSON.parse(String(decoding: r.body.prefix(4000), as: UTF8.self)), let m = json["error"]?["message"]?.string { return m }
        let s = String(decoding: r.body.prefix(300), as: UTF8.self)
        return s.isEmpty ? nil : s
    }

    /// A clear error for a refused request: names the bucket and object, never the token.
    func failure(_ r: Response, _ what: String, key: String?) -> WALEError {
        switch r.status {
        case 403:
            return WALEError(
                .user, "access denied to \(target)/\(key ?? "")", detail: message(r),
                hint: "the account in \(config.credentialsSource) needs storage.objects get, create, list and delete on the bucket")
        case 404:
            return WALEError(.user, "the bucket \(config.bucket) does not exist", detail: what, hint: "create it, or fix the prefix")
        default:
            return WALEError(.io, "GCS refused \(what) on \(target)/\(key ?? ""): HTTP \(r.status)", detail: message(r))
        }
    }

    /// GCS answers 404 for a missing bucket as for a missing object: the bucket's own 404 is a
    /// configuration error, so wal-fetch never tells PostgreSQL that the archive ends here.
    func missingBucket(_ what: String) async throws -> WALEError? {
        let b = try await send(.GET, url: bucketURL, what: "GET bucket \(config.bucket)")
        return b.status == 404 ? failure(b, what, key: nil) : nil
    }

    // MARK: ObjectStore

    /// Not for every object: a resumable upload's metadata is fixed when the session begins, so an
    /// object above one chunk lacks the late metadata; the engine then decides a repeated push by
    /// reading the object back. (A PATCH after the last chunk would add it: not built yet.)
    public var storesLateMetadata: Bool { false }

    static func info(_ json: JSON, key: String) -> ObjectInfo {
        var meta: [String: String] = [:]
        if case .object(let kv)? = json["metadata"] { for (k, v) in kv { if let s = v.string { meta[k.lowercased()] = s } } }
        return ObjectInfo(
            key: key, size: json["size"].flatMap { $0.string.flatMap { Int64($0) } ?? $0.int } ?? 0,
            lastModified: json["updated"]?.string.flatMap(parseISO8601) ?? 0, metadata: meta)
    }

    func parse(_ r: Response, _ what: String) throws -> JSON {
        do { return try JSON.parse(String(decoding: r.body, as: UTF8.self)) } catch {
            throw WALEError(.io, "GCS's answer to \(what) is not JSON wal-e can read", detail: "\(error)")
        }
    }

    public func info(_ key: String) async throws -> ObjectInfo? {
        let what = "GET metadata of \(key)"
        let r = try await send(.GET, url: objectURL(key), what: what)
        if r.status == 404 { return nil }
        guard r.status == 200 else { throw failure(r, what, key: key) }
        return Self.info(try parse(r, what), key: key)
    }

    public func read<R>(_ key: String, _ body: (any ByteSource) async throws -> R) async throws -> R {
        // A resumed read asks for the same generation (GCS's form of If-Match).
        let generation = NIOLockedValueBox<String?>(nil)
        return try await core.read("GET \(target)/\(key)", get: { headers in
            var query = [("alt", "media")]
            var extra = headers.filter { $0.0 != "if-match" }
            if headers.contains(where: { $0.0 == "if-match" }), let g = generation.withLockedValue({ $0 }) {
                query.append(("ifGenerationMatch", g))
            } else if headers.contains(where: { $0.0 == "if-match" }) {
                extra = headers
            }
            let resp = try await get(key, query: query, headers: extra)
            if let g = resp.headers.first(name: "x-goog-generation") { generation.withLockedValue { if $0 == nil { $0 = g } } }
            return resp
        }, body)
    }

    func get(_ key: String, query: [(String, String)], headers: [(String, String)]) async throws -> HTTPClientResponse {
        let what = "GET \(key)"
        let url = objectURL(key) + queryString(query)
        return try await withToken(what) { token in
            try await core.open(what) { handle in
                request(token, .GET, url: url, headers: headers, body: nil, handle: handle)
            } refuse: { r in
                if r.status == 401 { throw TokenRefused(token: token) }
                if r.status == 404 {
                    if let e = try await missingBucket(what) { throw e }
                    throw WALEError(.notFound, "object \(key) does not exist", detail: "\(target)/\(key)")
                }
                if HTTPCore.isTransientStatus(r.status) || r.status == 408 { throw WALEError(.io, "GCS answered \(r.status) to \(what)") }
                throw failure(r, what, key: key)
            }
        }
    }

    public func write(_ key: String, from source: any ByteSource, options: WriteOptions) async throws -> WriteOutcome {
        try await partedWrite(key, from: source, options: options)
    }

    /// The object resource of an upload: name, content type and metadata.
    func resource(_ key: String, _ options: WriteOptions, metadata: [String: String], extra: [(String, JSON)] = []) -> JSON {
        var fields: [(String, JSON)] = [
            ("name", .string(WALENames.name(key))), ("contentType", .string(options.contentType ?? "application/octet-stream")),
        ]
        if !metadata.isEmpty { fields.append(("metadata", .object(metadata.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }))) }
        return .object(fields + extra)
    }

    func outcome(_ r: Response, _ what: String, key: String) throws -> WriteOutcome {
        if r.status == 412 { return .alreadyExists }
        guard r.status == 200 || r.status == 201 else { throw failure(r, what, key: key) }
        return .created
    }

    func uploadQuery(_ type: String, _ options: WriteOptions) -> String {
        queryString([("uploadType", type)] + (options.ifAbsent ? [("ifGenerationMatch", "0")] : []))
    }

    /// One multipart upload (RFC 2387: the object resource, then the bytes), with the body's MD5
    /// and CRC32C declared so that GCS checks them.
    func putWhole(_ key: String, _ body: any RequestBody, metadata: [String: String], options: WriteOptions) async throws -> WriteOutcome {
        let meta = try resource(key, options, metadata: metadata, extra: [("md5Hash", .string(md5Base64(body))), ("crc32c", .string(crc32cBase64(body)))])
        let boundary = "wal-e-" + hexString((0..<12).map { _ in UInt8.random(in: 0...255) })
        // The body between its multipart framing, sent as one without a copy of it.
        let head = ByteBuffer(
            string: "--\(boundary)\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n\(meta.serialized())\r\n"
                + "--\(boundary)\r\nContent-Type: \(options.contentType ?? "application/octet-stream")\r\n\r\n")
        let whole = JoinedBody(parts: [head, body, ByteBuffer(string: "\r\n--\(boundary)--\r\n")])
        let what = "upload \(key)"
        let r = try await send(
            .POST, url: uploadURL + uploadQuery("multipart", options), headers: [("Content-Type", "multipart/related; boundary=\(boundary)")],
            body: whole, what: what)
        return try outcome(r, what, key: key)
    }

    func begin(_ key: String, options: WriteOptions) async throws -> ResumableUpload {
        let what = "start resumable upload of \(key)"
        let r = try await send(
            .POST, url: uploadURL + uploadQuery("resumable", options), headers: [("Content-Type", "application/json; charset=UTF-8")],
            body: ByteBuffer(string: resource(key, options, metadata: options.metadata).serialized()), what: what)
        guard r.status == 200 else { throw failure(r, what, key: key) }
        guard let session = r.headers.first(name: "location"), session.hasPrefix("http") else {
            throw WALEError(.io, "GCS started a resumable upload of \(key) without a session URL")
        }
        return ResumableUpload(store: self, key: key, session: session)
    }

    /// One resumable upload. Chunks go in order (`partsInFlight` is 1); a chunk shorter than the
    /// chunk size is the last and carries the total, otherwise an empty final request does. A
    /// chunk that failed part way is resumed from what GCS says it has (a status query), so no
    /// byte is sent twice or skipped.
    struct ResumableUpload: PartSession {
        let store: GCSStore
        let key: String
        let session: String

        struct Part: Sendable {
            var end: Int64
            /// The object is complete after this chunk (it was the last).
            var finished: WriteOutcome?
        }

        /// The number of bytes GCS holds (a 308's `Range: bytes=0-N`), or the upload's end.
        func persisted(_ what: String) async throws -> (Int64, WriteOutcome?) {
            let r = try await store.send(.PUT, url: session, headers: [("Content-Range", "bytes */*")], what: "status of \(what)")
            if r.status == 200 || r.status == 201 || r.status == 412 { return (-1, try store.outcome(r, what, key: key)) }
            guard r.status == 308 else { throw sessionFailure(r, what) }
            guard let range = r.headers.first(name: "range"), let dash = range.lastIndex(of: "-"), let last = Int64(range[range.index(after: dash)...]) else {
                return (0, nil)
            }
            return (last + 1, nil)
        }

        func sessionFailure(_ r: Response, _ what: String) -> WALEError {
            if r.status == 404 || r.status == 410 {
                return WALEError(.io, "the resumable upload session of \(key) expired during \(what)", hint: "the upload starts over")
            }
            return store.failure(r, what, key: key)
        }

        func put(part n: Int, _ body: ByteBuffer) async throws -> Part {
            let start = Int64(n - 1) * Int64(store.partSize)
            let size = Int64(body.readableBytes)
            let end = start + size
            let total = size < Int64(store.partSize) ? "\(end)" : "*"
            let what = "chunk \(n) of \(key)"
            let attempts = NIOLockedValueBox(0)
            let r = try await store.withToken(what) { token in
                try await store.core.send(what) { handle in
                    var from = start
                    if attempts.withLockedValue({ $0 += 1; return $0 }) > 1 {
                        let (have, _) = try await persisted(what)
                        from = have < 0 ? end : max(start, min(have, end))
                    }
                    if from >= end && total == "*" {
                        return store.request(token, .PUT, url: session, headers: [("Content-Range", "bytes */*")], body: nil, handle: handle)
                    }
                    if from >= end {
                        return store.request(token, .PUT, url: session, headers: [("Content-Range", "bytes */\(total)")], body: nil, handle: handle)
                    }
                    let slice = body.getSlice(at: body.readerIndex + Int(from - start), length: Int(end - from))!
                    return store.request(token, .PUT, url: session, headers: [("Content-Range", "bytes \(from)-\(end - 1)/\(total)")], body: slice, handle: handle)
                } check: { r in try store.check(r, token: token, what: what) }
            }
            if total != "*" {
                if r.status == 308 { throw WALEError(.io, "GCS did not complete \(key) after its last chunk") }
                if r.status != 200 && r.status != 201 && r.status != 412 { throw sessionFailure(r, what) }
                return Part(end: end, finished: try store.outcome(r, what, key: key))
            }
            guard r.status == 308 else { throw sessionFailure(r, what) }
            return Part(end: end, finished: nil)
        }

        func commit(_ parts: [Part], metadata: [String: String]) async throws -> WriteOutcome {
            if let last = parts.last, let done = last.finished { return done }
            let total = parts.last?.end ?? 0
            let what = "finish \(key)"
            let r = try await store.send(.PUT, url: session, headers: [("Content-Range", "bytes */\(total)")], what: what)
            if r.status == 308 { throw WALEError(.io, "GCS did not complete \(key) at \(total) bytes") }
            if r.status != 200 && r.status != 201 && r.status != 412 { throw sessionFailure(r, what) }
            return try store.outcome(r, what, key: key)
        }

        /// Cancels the session (GCS answers 499); nothing of it was visible.
        func abort() async {
            _ = try? await store.send(.DELETE, url: session, what: "cancel upload of \(key)")
        }
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        let limit = config.listPageSize ?? 1000
        return try await listAllPages { token in
            var q: [(String, String)] = [("prefix", WALENames.name(prefix)), ("maxResults", String(limit))]
            if let token { q.append(("pageToken", token)) }
            let what = "list \(target)/\(prefix)"
            let r = try await send(.GET, url: bucketURL + "/o" + queryString(q), what: what)
            guard r.status == 200 else { throw failure(r, what, key: prefix) }
            let json = try parse(r, what)
            let objects = (json["items"]?.array ?? []).compactMap { item -> ObjectInfo? in
                guard let name = item["name"]?.string else { return nil }
                return Self.info(item, key: WALENames.key(name))
            }
            return (objects, json["nextPageToken"]?.string)
        }
    }

    /// One DELETE per object (GCS's batch endpoint is a multipart envelope of the same requests);
    /// a missing object is not an error.
    public func delete(_ keys: [String]) async throws {
        try await deleteEach(keys, service: "GCS") { key in
            let r = try await send(.DELETE, url: objectURL(key), what: "DELETE \(key)")
            return r.status / 100 == 2 || r.status == 404 ? nil : "HTTP \(r.status)"
        }
    }
}
