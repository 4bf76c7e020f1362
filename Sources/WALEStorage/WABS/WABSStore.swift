import AsyncHTTPClient
import Crypto
import NIOCore
import NIOHTTP1
import WALECore

/// The `wabs://` backend: Azure Blob block blobs over the REST API (version 2021-08-06), Shared
/// Key signatures or a SAS token, deadlines on every request and bounded retries, streaming both
/// ways (WAL-E 1.1 read every blob into memory, WAL-E issue #261).
///
/// Blob names are the prefix path without a leading slash, as WAL-E 1.x names them. An object that
/// fits one block (4 MiB + 1 MiB of slack, or a 16 MiB WAL segment) is one Put Blob; larger ones
/// are Put Block × N (several in flight, each with its Content-MD5) and one Put Block List, which
/// also carries the metadata known only at the end. `If-None-Match: *` makes WAL objects
/// create-only. Metadata names cannot hold `-` on Azure: `wale-content-xxh3-128` is stored as
/// `wale_content_xxh3_128` and read back under its usual name.
public struct WABSStore: PartedUploadTarget {
    public let config: WABSConfiguration
    let core: HTTPCore
    let budget: ByteBudget
    static let version = "2021-08-06"
    var partSize: Int { config.blockSize }
    var partsInFlight: Int { config.blocksInFlight }

    public init(config: WABSConfiguration, logger: Logger, retry: RetryPolicy) throws {
        self.config = config
        core = try HTTPCore(
            service: "Azure", endpoint: "\(config.scheme)://\(config.authority)", caBundle: nil, caVariable: "SSL_CERT_FILE",
            limits: config.limits, retry: retry, logger: logger)
        budget = ByteBudget(capacity: config.uploadMemory)
    }

    var target: String { "wabs://\(config.container)" }

    // MARK: requests

    /// Shared Key: HMAC-SHA256 over the verb, the standard headers, the x-ms- headers and the
    /// resource (`/ACCOUNT` + the URL path + the query parameters, sorted).
    static func stringToSign(
        method: String, path: String, query: [(String, String)], headers: [(String, String)], account: String
    ) -> String {
        var byName: [String: String] = [:]
        for (k, v) in headers { byName[k.lowercased()] = v }
        let length = byName["content-length"].flatMap { $0 == "0" ? nil : $0 } ?? ""
        let standard = [
            byName["content-encoding"] ?? "", byName["content-language"] ?? "", length, byName["content-md5"] ?? "",
            byName["content-type"] ?? "", byName["date"] ?? "", byName["if-modified-since"] ?? "", byName["if-match"] ?? "",
            byName["if-none-match"] ?? "", byName["if-unmodified-since"] ?? "", byName["range"] ?? "",
        ]
        let xms = byName.filter { $0.key.hasPrefix("x-ms-") }.sorted { $0.key < $1.key }
            .map { "\($0.key):\($0.value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " "))\n" }.joined()
        var grouped: [String: [String]] = [:]
        for (k, v) in query { grouped[k.lowercased(), default: []].append(v) }
        let q = grouped.keys.sorted().map { "\n\($0):\(grouped[$0]!.sorted().joined(separator: ","))" }.joined()
        return method + "\n" + standard.joined(separator: "\n") + "\n" + xms + "/" + account + path + q
    }

    func request(
        _ method: HTTPMethod, key: String?, query: [(String, String)] = [], headers extra: [(String, String)] = [], body: (any RequestBody)? = nil,
        handle: BodyHandle
    ) -> HTTPClientRequest {
        let path = config.path(key)
        var headers: [(String, String)] = [("x-ms-date", httpDate(POSIX.now())), ("x-ms-version", Self.version)] + extra
        if let body { headers.append(("content-length", String(body.byteCount))) }
        var sas: String?
        switch config.credential {
        case .sharedKey(let key):
            let sts = Self.stringToSign(method: method.rawValue, path: path, query: query, headers: headers, account: config.account)
            let mac = HMAC<SHA256>.authenticationCode(for: Array(sts.utf8), using: SymmetricKey(data: key))
            headers.append(("authorization", "SharedKey \(config.account):\(base64(Array(mac)))"))
        case .sas(let token):
            sas = token
        }
        let q = queryString(query)
        var r = HTTPClientRequest(url: "\(config.scheme)://\(config.authority)\(path)" + q + (sas.map { (q.isEmpty ? "?" : "&") + $0 } ?? ""))
        r.method = method
        for (k, v) in headers { r.headers.replaceOrAdd(name: k, value: v) }
        if let body { core.attach(body, to: &r, handle: handle) }
        return r
    }

    typealias Response = HTTPCore.Response

    /// Sends a request and reads the whole (small) answer, retrying transient failures.
    func send(
        _ method: HTTPMethod, key: String?, query: [(String, String)] = [], headers: [(String, String)] = [], body: (any RequestBody)? = nil,
        what: String
    ) async throws -> Response {
        try await core.send(what) { handle in
            request(method, key: key, query: query, headers: headers, body: body, handle: handle)
        } check: { r in
            // Md5Mismatch: the body was damaged on the way; sending it again is the cure.
            if HTTPCore.isTransientStatus(r.status) || r.code == "Md5Mismatch" {
                throw WALEError(.io, "Azure answered \(r.status) \(r.code ?? "") to \(what)", detail: xmlValues(r.body, "Message").first)
            }
        }
    }

    /// A clear error for a refused request: names the container and blob, never the key.
    func failure(_ r: Response, _ what: String, key: String?) -> WALEError {
        let code = r.code ?? "HTTP \(r.status)"
        let blob = "\(target)/\(key ?? "")"
        switch code {
        case "ContainerNotFound":
            return WALEError(.user, "the container \(config.container) does not exist in account \(config.account)", detail: what, hint: "create it, or fix the prefix")
        case "AuthenticationFailed":
            return WALEError(
                .user, "Azure rejected the credentials of account \(config.account) for \(blob)", detail: what,
                hint: "check WABS_ACCOUNT_NAME and WABS_ACCESS_KEY (or that WABS_SAS_TOKEN is valid and not expired), and the clock")
        case "AuthorizationFailure", "AuthorizationPermissionMismatch", "InsufficientAccountPermissions":
            return WALEError(.user, "access denied to \(blob)", detail: what, hint: "the key or SAS lacks permission (wal-e needs read, write, list and delete)")
        case "AccountIsDisabled":
            return WALEError(.user, "the Azure storage account \(config.account) is disabled", detail: what)
        default:
            return WALEError(.io, "Azure refused \(what) on \(blob): \(code)", detail: xmlValues(r.body, "Message").first)
        }
    }

    // MARK: ObjectStore

    public var storesLateMetadata: Bool { true }

    public func info(_ key: String) async throws -> ObjectInfo? {
        let r = try await send(.HEAD, key: key, what: "HEAD \(key)")
        if r.status == 404 { return nil }
        guard r.status == 200 else { throw failure(r, "HEAD \(key)", key: key) }
        return ObjectInfo(
            key: key, size: Int64(r.headers.first(name: "content-length") ?? "0") ?? 0,
            lastModified: r.headers.first(name: "last-modified").flatMap(parseHTTPDate) ?? 0, metadata: Self.metadata(r.headers))
    }

    /// The blob's metadata (Azure names cannot hold `-`: written with `_`).
    static func metadata(_ headers: HTTPHeaders) -> [String: String] {
        var meta: [String: String] = [:]
        for (k, v) in HTTPCore.userMetadata(headers, prefix: "x-ms-meta-") { meta[k.replacingUnderscores()] = v }
        return meta
    }

    public func read<R>(_ key: String, _ body: (any ByteSource) async throws -> R) async throws -> R {
        try await core.read(
            "GET \(target)/\(key)", rangeHeader: "x-ms-range", metadata: Self.metadata, get: { range in try await get(key, range: range) }, body)
    }

    /// A Get Blob whose head said 200 (or 206 for a range); anything else becomes its error.
    func get(_ key: String, range: [(String, String)]) async throws -> HTTPClientResponse {
        let what = "GET \(key)"
        return try await core.open(what) { handle in
            request(.GET, key: key, headers: range, handle: handle)
        } refuse: { r in
            if r.status == 404 && r.code != "ContainerNotFound" {
                throw WALEError(.notFound, "object \(key) does not exist", detail: "\(target)/\(key)")
            }
            if HTTPCore.isTransientStatus(r.status) { throw WALEError(.io, "Azure answered \(r.status) to \(what)") }
            throw failure(r, what, key: key)
        }
    }

    public func write(_ key: String, from source: any ByteSource, options: WriteOptions) async throws -> WriteOutcome {
        try await partedWrite(key, from: source, options: options)
    }

    /// The content type, the metadata (Azure names cannot hold `-`) and the create-only condition.
    func blobHeaders(_ options: WriteOptions, metadata: [String: String]) -> [(String, String)] {
        var h: [(String, String)] = []
        if let ct = options.contentType { h.append(("x-ms-blob-content-type", ct)) }
        for (k, v) in metadata.sorted(by: { $0.key < $1.key }) { h.append(("x-ms-meta-" + k.replacingHyphens(), v)) }
        if options.ifAbsent { h.append(("if-none-match", "*")) }
        return h
    }

    func outcome(_ r: Response, _ what: String, key: String) throws -> WriteOutcome {
        if r.status == 412 || r.status == 409 && r.code == "BlobAlreadyExists" { return .alreadyExists }
        guard r.status == 201 else { throw failure(r, what, key: key) }
        return .created
    }

    func putWhole(_ key: String, _ body: any RequestBody, metadata: [String: String], options: WriteOptions) async throws -> WriteOutcome {
        let headers = try blobHeaders(options, metadata: metadata) + [("x-ms-blob-type", "BlockBlob"), ("content-md5", md5Base64(body))]
        let r = try await send(.PUT, key: key, headers: headers, body: body, what: "Put Blob \(key)")
        return try outcome(r, "write \(key)", key: key)
    }

    func begin(_ key: String, options: WriteOptions) async throws -> Blocks { Blocks(store: self, key: key, options: options) }

    /// Put Block × N, then one Put Block List that carries the metadata known only at the end.
    /// Uncommitted blocks of an abandoned upload are dropped by Azure itself (after a week).
    struct Blocks: PartSession {
        let store: WABSStore
        let key: String
        let options: WriteOptions

        /// Fixed-length IDs (Azure requires one length per blob).
        static func id(_ n: Int) -> String { base64(Array(zeroPadded(n - 1, 6).utf8)) }

        func put(part n: Int, _ body: ByteBuffer) async throws -> String {
            let id = Self.id(n)
            let what = "Put Block \(n - 1) of \(key)"
            let r = try await store.send(
                .PUT, key: key, query: [("blockid", id), ("comp", "block")], headers: [("content-md5", md5Base64(body))], body: body, what: what)
            guard r.status == 201 else { throw store.failure(r, what, key: key) }
            return id
        }

        func commit(_ ids: [String], metadata: [String: String]) async throws -> WriteOutcome {
            let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>" + ids.map { "<Latest>\($0)</Latest>" }.joined() + "</BlockList>"
            let body = ByteBuffer(string: xml)
            let r = try await store.send(
                .PUT, key: key, query: [("comp", "blocklist")], headers: store.blobHeaders(options, metadata: metadata) + [("content-md5", md5Base64(body))],
                body: body, what: "Put Block List \(key)")
            return try store.outcome(r, "write \(key)", key: key)
        }

        func abort() async {}
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        try await listAllPages { marker in
            var q: [(String, String)] = [("comp", "list"), ("prefix", prefix), ("restype", "container")]
            if let marker { q.append(("marker", marker)) }
            if let n = config.listPageSize { q.append(("maxresults", String(n))) }
            let r = try await send(.GET, key: nil, query: q, what: "List Blobs \(prefix)")
            guard r.status == 200 else { throw failure(r, "List Blobs \(prefix)", key: prefix) }
            let objects = xmlBlocks(r.body, "Blob").compactMap { b -> ObjectInfo? in
                guard let name = xmlValues(b, "Name").first.map(xmlUnescape) else { return nil }
                let modified = xmlValues(b, "Last-Modified").first
                return ObjectInfo(
                    key: name, size: Int64(xmlValues(b, "Content-Length").first ?? "0") ?? 0, lastModified: modified.flatMap(parseHTTPDate) ?? 0)
            }
            return (objects, xmlValues(r.body, "NextMarker").first.flatMap { $0.isEmpty ? nil : xmlUnescape($0) })
        }
    }

    /// One Delete Blob per key; a blob already gone is not an error.
    public func delete(_ keys: [String]) async throws {
        try await deleteEach(keys, service: "Azure") { key in
            let r = try await send(.DELETE, key: key, what: "Delete Blob \(key)")
            return r.status == 202 || r.status == 404 && r.code == "BlobNotFound" ? nil : r.code ?? String(r.status)
        }
    }
}

extension HTTPCore.Response {
    /// Azure's error code.
    var code: String? { headers.first(name: "x-ms-error-code") ?? xmlValues(body, "Code").first }
}

extension String {
    fileprivate func replacingHyphens() -> String { String(map { $0 == "-" ? "_" : $0 }) }
    fileprivate func replacingUnderscores() -> String { String(map { $0 == "_" ? "-" : $0 }) }
}
