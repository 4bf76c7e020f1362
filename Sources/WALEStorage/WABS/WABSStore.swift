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
/// create-only. Metadata names cannot hold `-` on Azure: `wale-content-sha256` is stored as
/// `wale_content_sha256` and read back under its usual name.
public struct WABSStore: ObjectStore {
    public let config: WABSConfiguration
    let logger: Logger
    let retry: S3Store.Retry
    let client: HTTPClient
    let budget: ByteBudget
    static let version = "2021-08-06"

    public init(config: WABSConfiguration, logger: Logger, attempts: Int) throws {
        self.config = config
        self.logger = logger
        retry = S3Store.Retry(attempts: attempts)
        client = try S3Store.client(caBundle: nil, limits: config.limits)
        budget = ByteBudget(capacity: config.uploadMemory)
    }

    var requestTimeout: TimeAmount { config.limits.deadline }
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
        _ method: HTTPMethod, key: String?, query: [(String, String)] = [], headers extra: [(String, String)] = [], body: ByteBuffer? = nil,
        handle: BodyHandle? = nil
    ) -> HTTPClientRequest {
        let path = config.path(key)
        var headers: [(String, String)] = [("x-ms-date", httpDate(POSIX.now())), ("x-ms-version", Self.version)] + extra
        if let body { headers.append(("content-length", String(body.readableBytes))) }
        var all = query.map { SigV4Signer.uriEncode($0.0, keepSlash: false) + "=" + SigV4Signer.uriEncode($0.1, keepSlash: false) }
        switch config.credential {
        case .sharedKey(let key):
            let sts = Self.stringToSign(method: method.rawValue, path: path, query: query, headers: headers, account: config.account)
            let mac = HMAC<SHA256>.authenticationCode(for: Array(sts.utf8), using: SymmetricKey(data: key))
            headers.append(("authorization", "SharedKey \(config.account):\(base64(Array(mac)))"))
        case .sas(let token):
            all.append(token)
        }
        var r = HTTPClientRequest(url: "\(config.scheme)://\(config.authority)\(path)" + (all.isEmpty ? "" : "?" + all.joined(separator: "&")))
        r.method = method
        for (k, v) in headers { r.headers.replaceOrAdd(name: k, value: v) }
        if let body {
            let h = handle ?? BodyHandle()
            h.set(body)
            r.body = .stream(BufferSlices(handle: h, group: client.eventLoopGroup), length: .known(Int64(body.readableBytes)))
        }
        return r
    }

    struct Response {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
        var code: String? { headers.first(name: "x-ms-error-code") ?? xmlValues(body, "Code").first }
    }

    /// Sends a request and reads the whole (small) answer, retrying transient failures.
    func send(
        _ method: HTTPMethod, key: String?, query: [(String, String)] = [], headers: [(String, String)] = [], body: ByteBuffer? = nil,
        what: String
    ) async throws -> Response {
        try await withRetries(what) {
            let handle = BodyHandle()
            defer { handle.clear() }
            let req = request(method, key: key, query: query, headers: headers, body: body, handle: handle)
            let resp: HTTPClientResponse
            var data: [UInt8] = []
            do {
                let deadline = POSIX.monotonic() + config.limits.requestTimeout
                resp = try await client.execute(req, timeout: requestTimeout)
                data = try await collectBody(resp.body, limit: 64 << 20, deadline: deadline, what: what)
            } catch let e as WALEError {
                throw e
            } catch {
                throw WALEError(.io, "Azure request failed: \(what)", detail: redactedDescription(error), hint: "is \(config.scheme)://\(config.authority) reachable?")
            }
            let r = Response(status: Int(resp.status.code), headers: resp.headers, body: data)
            // Md5Mismatch: the body was damaged on the way; sending it again is the cure.
            if r.status >= 500 || r.status == 429 || r.code == "Md5Mismatch" {
                throw WALEError(.io, "Azure answered \(r.status) \(r.code ?? "") to \(what)", detail: xmlValues(r.body, "Message").first)
            }
            return r
        }
    }

    func withRetries<R>(_ what: String, _ body: () async throws -> R) async throws -> R {
        try await retry.run(what, logger: logger, body)
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
        var meta: [String: String] = [:]
        for h in r.headers where h.name.lowercased().hasPrefix("x-ms-meta-") {
            meta[String(h.name.lowercased().dropFirst(10)).replacingUnderscores()] = h.value
        }
        return ObjectInfo(
            key: key, size: Int64(r.headers.first(name: "content-length") ?? "0") ?? 0,
            lastModified: r.headers.first(name: "last-modified").flatMap(parseHTTPDate) ?? 0, metadata: meta)
    }

    public func read<R>(_ key: String, _ body: (any ByteSource) async throws -> R) async throws -> R {
        let first = try await get(key, range: [])
        let source = ResumableBody(
            first: first, what: "GET \(target)/\(key)", limits: config.limits,
            retry: RetryBudget(retry, logger: logger)
        ) { offset, etag in
            try await get(key, range: rangeHeaders(offset: offset, etag: etag, rangeHeader: "x-ms-range"))
        }
        return try await body(source)
    }

    /// A Get Blob whose head said 200 (or 206 for a range); anything else becomes its error.
    func get(_ key: String, range: [(String, String)]) async throws -> HTTPClientResponse {
        try await withRetries("GET \(key)") {
            let resp: HTTPClientResponse
            do {
                resp = try await client.execute(request(.GET, key: key, headers: range), timeout: requestTimeout)
            } catch {
                throw WALEError(.io, "Azure request failed: GET \(key)", detail: redactedDescription(error))
            }
            if resp.status == .ok || resp.status == .partialContent || resp.status == .preconditionFailed { return resp }
            let data = try await collectBody(resp.body, limit: 1 << 20, deadline: POSIX.monotonic() + config.limits.requestTimeout, what: "GET \(key)")
            let r = Response(status: Int(resp.status.code), headers: resp.headers, body: data)
            if r.status == 404 && r.code != "ContainerNotFound" {
                throw WALEError(.notFound, "object \(key) does not exist", detail: "\(target)/\(key)")
            }
            if r.status >= 500 || r.status == 429 { throw WALEError(.io, "Azure answered \(r.status) to GET \(key)") }
            throw failure(r, "GET \(key)", key: key)
        }
    }

    public func write(_ key: String, from source: any ByteSource, options: WriteOptions) async throws -> WriteOutcome {
        if options.ifAbsent, options.gate == nil, try await info(key) != nil { return .alreadyExists }
        let size = config.blockSize
        let parts = PartReader(source, size: size)
        guard let (firstBytes, ended, firstHold) = try await readFirstPart(parts, options: options, budget: budget) else { return .alreadyExists }
        var first = firstBytes
        var headers: [(String, String)] = []
        if let ct = options.contentType { headers.append(("x-ms-blob-content-type", ct)) }
        func withMetadata(_ h: [(String, String)]) -> [(String, String)] {
            var h = h
            for (k, v) in options.metadata.merging(options.lateMetadata?.value() ?? [:], uniquingKeysWith: { $1 }) {
                h.append(("x-ms-meta-" + k.replacingHyphens(), v))
            }
            if options.ifAbsent { h.append(("if-none-match", "*")) }
            return h
        }
        let r: Response
        if ended {
            do {
                r = try await send(
                    .PUT, key: key, headers: withMetadata(headers + [("x-ms-blob-type", "BlockBlob"), ("content-md5", md5Base64(first))]),
                    body: first, what: "Put Blob \(key)")
                await budget.release(firstHold)
            } catch {
                await budget.release(firstHold)
                throw error
            }
        } else {
            await budget.release(max(0, firstHold - size))
            let box = PartBox(first)
            first = ByteBuffer()
            let ids = try await putBlocks(key, first: box, parts: parts)
            let xml = "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>" + ids.map { "<Latest>\($0)</Latest>" }.joined() + "</BlockList>"
            let body = ByteBuffer(string: xml)
            r = try await send(
                .PUT, key: key, query: [("comp", "blocklist")], headers: withMetadata(headers + [("content-md5", md5Base64(body))]), body: body,
                what: "Put Block List \(key)")
        }
        if r.status == 412 || r.status == 409 && r.code == "BlobAlreadyExists" { return .alreadyExists }
        guard r.status == 201 else { throw failure(r, "write \(key)", key: key) }
        return .created
    }

    /// Uploads the blocks (the first one given, the rest read from `parts`), a few at a time, each
    /// holding its share of the memory budget until it is sent; returns the block IDs in order.
    func putBlocks(_ key: String, first: PartBox, parts: PartReader) async throws -> [String] {
        let held = config.blockSize
        let budget = self.budget
        return try await withThrowingTaskGroup(of: Void.self) { group in
            var ids: [String] = []
            var part: ByteBuffer? = first.take()
            var inFlight = 0
            while let size = part?.readableBytes, size > 0 {
                if inFlight >= config.blocksInFlight {
                    do {
                        try await group.next()
                        inFlight -= 1
                    } catch {
                        await budget.release(held)
                        throw error
                    }
                }
                // Fixed-length IDs (Azure requires one length per blob).
                let n = ids.count
                let id = base64(Array(sixDigits(n).utf8))
                ids.append(id)
                let box = PartBox(part!)
                part = nil
                group.addTask {
                    do {
                        let body = box.take()
                        let what = "Put Block \(n) of \(key)"
                        let r = try await send(
                            .PUT, key: key, query: [("blockid", id), ("comp", "block")], headers: [("content-md5", md5Base64(body))],
                            body: body, what: what)
                        guard r.status == 201 else { throw failure(r, what, key: key) }
                        await budget.release(held)
                    } catch {
                        await budget.release(held)
                        throw error
                    }
                }
                inFlight += 1
                await budget.acquire(held)
                let next: ByteBuffer
                do { next = try await parts.next() } catch {
                    await budget.release(held)
                    throw error
                }
                if next.readableBytes == 0 { await budget.release(held) }
                part = next.readableBytes == 0 ? nil : next
            }
            try await group.waitForAll()
            return ids
        }
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        var out: [ObjectInfo] = []
        var marker: String?
        repeat {
            var q: [(String, String)] = [("comp", "list"), ("prefix", prefix), ("restype", "container")]
            if let marker { q.append(("marker", marker)) }
            if let n = config.listPageSize { q.append(("maxresults", String(n))) }
            let r = try await send(.GET, key: nil, query: q, what: "List Blobs \(prefix)")
            guard r.status == 200 else { throw failure(r, "List Blobs \(prefix)", key: prefix) }
            for b in xmlBlocks(r.body, "Blob") {
                guard let name = xmlValues(b, "Name").first.map(xmlUnescape) else { continue }
                let modified = xmlValues(b, "Last-Modified").first
                out.append(
                    ObjectInfo(
                        key: name, size: Int64(xmlValues(b, "Content-Length").first ?? "0") ?? 0,
                        lastModified: modified.flatMap(parseHTTPDate) ?? 0))
            }
            marker = xmlValues(r.body, "NextMarker").first.flatMap { $0.isEmpty ? nil : xmlUnescape($0) }
        } while marker != nil
        return out
    }

    /// One Delete Blob per key, eight at a time; a blob already gone is not an error.
    public func delete(_ keys: [String]) async throws {
        var failed: [String] = []
        try await withThrowingTaskGroup(of: String?.self) { group in
            var next = 0
            func start() {
                let key = keys[next]
                next += 1
                group.addTask {
                    let r = try await send(.DELETE, key: key, what: "Delete Blob \(key)")
                    return r.status == 202 || r.status == 404 && r.code == "BlobNotFound" ? nil : "\(key)\t\(r.code ?? String(r.status))"
                }
            }
            while next < min(8, keys.count) { start() }
            while let done = try await group.next() {
                if let done { failed.append(done) }
                if next < keys.count { start() }
            }
        }
        if !failed.isEmpty {
            throw WALEError(.io, "Azure could not delete \(failed.count) blobs", detail: failed.prefix(10).joined(separator: "; "))
        }
    }
}

extension String {
    fileprivate func replacingHyphens() -> String { String(map { $0 == "-" ? "_" : $0 }) }
    fileprivate func replacingUnderscores() -> String { String(map { $0 == "_" ? "-" : $0 }) }
}

/// Six decimal digits, zero-padded.
private func sixDigits(_ n: Int) -> String {
    let digits = String(n)
    return String(repeating: "0", count: Swift.max(0, 6 - digits.count)) + digits
}

/// `Sun, 29 Nov 2026 15:30:00 GMT` (RFC 1123), for x-ms-date.
func httpDate(_ epoch: Double) -> String {
    let t = UTCTime(epochSeconds: epoch.rounded(.down))
    let days = Int((epoch / 86_400).rounded(.down))
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][((days % 7) + 7) % 7]
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][t.month - 1]
    func z(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(weekday), \(z(t.day)) \(month) \(t.year) \(z(t.hour)):\(z(t.minute)):\(z(t.second)) GMT"
}
