import AsyncHTTPClient
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOSSL
import WALECore

/// What every HTTP store shares: one client per trust configuration, the deadlines of
/// `TransferLimits`, the retry policy, and the request/response path: a small exchange read whole
/// under its deadline, a streamed GET that resumes from the last good byte, and the classification
/// of a request that got no answer. A store supplies how to build (and sign) a request and what
/// its answers mean; it never talks to the HTTP client itself.
struct HTTPCore: Sendable {
    let client: HTTPClient
    let limits: TransferLimits
    let retry: RetryPolicy
    let logger: Logger
    /// `http://host:port`, for messages.
    let endpoint: String
    /// The store's name in messages: "S3", "Azure", "Swift", "GCS".
    let service: String
    /// The setting that names a private CA for this store, for the TLS hint.
    let caVariable: String

    init(service: String, endpoint: String, caBundle: String?, caVariable: String, limits: TransferLimits, retry: RetryPolicy, logger: Logger) throws {
        self.service = service
        self.endpoint = endpoint
        self.caVariable = caVariable
        self.limits = limits
        self.retry = retry
        self.logger = logger
        client = try HTTPClients.shared(caBundle: caBundle, limits: limits)
    }

    struct Response: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
    }

    /// Builds one attempt's request; given the handle its body must be attached with.
    typealias Make = @Sendable (_ handle: BodyHandle) async throws -> HTTPClientRequest

    /// One small exchange, retried by the policy: `make` builds a fresh (freshly signed) request
    /// for every attempt, the whole answer is read within the request deadline, and `check` sees it
    /// first: it throws a transient error to have it retried (5xx, throttling, a damaged upload,
    /// an expired token it refreshed) or anything else to end the request.
    func send(_ what: String, _ make: Make, check: (Response) async throws -> Void) async throws -> Response {
        try await retry.run(logger: logger, what: what) { _ in
            let handle = BodyHandle()
            defer { handle.clear() }
            let req = try await make(handle)
            let r: Response
            do {
                let deadline = POSIX.monotonic() + limits.requestTimeout
                let resp = try await client.execute(req, timeout: limits.deadline)
                let data = try await collectBody(resp.body, limit: 64 << 20, deadline: deadline, what: what)
                r = Response(status: Int(resp.status.code), headers: resp.headers, body: data)
            } catch {
                throw requestFailed(error, what)
            }
            try await check(r)
            return r
        }
    }

    /// A streamed GET's head, retried: a 200, 206 or 412 is returned with its body unread;
    /// anything else is read whole and given to `refuse`, which throws the store's error for it
    /// (transient ones are retried).
    func open(_ what: String, _ make: Make, refuse: (Response) async throws -> Never) async throws -> HTTPClientResponse {
        try await retry.run(logger: logger, what: what) { _ in
            let resp: HTTPClientResponse
            do {
                resp = try await client.execute(try await make(BodyHandle()), timeout: limits.deadline)
            } catch {
                throw requestFailed(error, what)
            }
            if resp.status == .ok || resp.status == .partialContent || resp.status == .preconditionFailed { return resp }
            let data = try await collectBody(resp.body, limit: 1 << 20, deadline: POSIX.monotonic() + limits.requestTimeout, what: what)
            try await refuse(Response(status: Int(resp.status.code), headers: resp.headers, body: data))
        }
    }

    /// Streams an object into `body`: `get(headers)` opens the object with these extra headers
    /// (none at first; then the range from the last good byte, under `rangeHeader`, and If-Match),
    /// as `open` does.
    /// `metadata` reads the object's user metadata from the first answer's headers.
    func read<R>(
        _ what: String, rangeHeader: String = "range", metadata: (HTTPHeaders) -> [String: String] = { _ in [:] },
        get: @escaping (_ headers: [(String, String)]) async throws -> HTTPClientResponse,
        _ body: (any ByteSource) async throws -> R
    ) async throws -> R {
        let first = try await get([])
        let source = ResumableBody(
            first: first, metadata: metadata(first.headers), what: what, limits: limits, retry: RetryBudget(retry, logger: logger)
        ) { offset, etag in
            try await get(rangeHeaders(offset: offset, etag: etag, rangeHeader: rangeHeader))
        }
        return try await body(source)
    }

    /// The user metadata among `headers`: those named `prefix` + name (`x-amz-meta-`...), by
    /// lower-case name.
    static func userMetadata(_ headers: HTTPHeaders, prefix: String) -> [String: String] {
        var meta: [String: String] = [:]
        for h in headers where h.name.lowercased().hasPrefix(prefix) { meta[String(h.name.lowercased().dropFirst(prefix.count))] = h.value }
        return meta
    }

    /// A request that got no answer: TLS verification failures are the user's to fix (and not
    /// retried); anything else (refused, reset, timed out) is transient.
    func requestFailed(_ error: any Error, _ what: String) -> WALEError {
        if let e = error as? WALEError { return e }
        if error is NIOSSLError || error is NIOSSLExtraError || "\(error)".contains("handshakeFailed") {
            return WALEError(
                .user, "TLS verification of \(endpoint) failed: \(what)", detail: redactedDescription(error),
                hint: "if the server uses a private CA, set \(caVariable) to its PEM file")
        }
        return WALEError(.io, "\(service) request failed: \(what)", detail: redactedDescription(error), hint: "is \(endpoint) reachable?")
    }

    /// The usual transient answers: 5xx and 429.
    static func isTransientStatus(_ status: Int) -> Bool { status >= 500 || status == 429 }

    /// Attaches `body` to a request: 256 KiB slices handed over as the connection drains, so TLS
    /// encrypts 256 KiB at a time, not a second copy of the whole body (a spooled body is read
    /// from its file slice by slice). The handle lets the sender drop the body once the attempt is
    /// over, whatever the HTTP client still holds on to: part buffers must not outlive their
    /// memory budget.
    func attach(_ body: any RequestBody, to r: inout HTTPClientRequest, handle: BodyHandle) {
        handle.set(body)
        r.body = .stream(BodySlices(handle: handle, group: client.eventLoopGroup), length: .known(Int64(body.byteCount)))
        r.headers.replaceOrAdd(name: "Content-Length", value: String(body.byteCount))
    }
}

/// The process's HTTP clients, one per trust configuration and idle timeout: connection pool,
/// connect and idle-read timeouts, certificate verification always on.
enum HTTPClients {
    static func shared(caBundle: String?, limits: TransferLimits) throws -> HTTPClient {
        let id = "\(caBundle ?? "")|\(limits.idleRead.nanoseconds)"
        return try clients.withLockedValue { clients throws(WALEError) in
            if let c = clients[id] { return c }
            let c = try make(caBundle: caBundle, idleRead: limits.idleRead)
            clients[id] = c
            return c
        }
    }
    static let clients = NIOLockedValueBox<[String: HTTPClient]>([:])

    static func make(caBundle: String?, idleRead: TimeAmount) throws(WALEError) -> HTTPClient {
        var c = HTTPClient.Configuration()
        c.timeout = .init(connect: .seconds(5), read: idleRead)
        c.connectionPool = .init(idleTimeout: .seconds(30))
        c.decompression = .disabled
        // HTTP/1.1 only: over TLS async-http-client would negotiate HTTP/2 with servers that offer
        // it (SeaweedFS does), and its HTTP/2 path trapped under parallel streaming uploads here
        // (1 backup-push in 6 on the benchmark cluster).
        c.httpVersion = .http1Only
        if let caBundle {
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.certificateVerification = .fullVerification
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caBundle))
            } catch {
                throw WALEError(.user, "the CA bundle \(caBundle) holds no usable PEM certificate", detail: "\(error)")
            }
            c.tlsConfiguration = tls
        }
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: c)
    }
}

/// `?a=b&c=d` with both sides percent-encoded (empty for no parameters).
func queryString(_ query: [(String, String)]) -> String {
    query.isEmpty ? "" : "?" + query.map { percentEncode($0.0, keepSlash: false) + "=" + percentEncode($0.1, keepSlash: false) }.joined(separator: "&")
}
