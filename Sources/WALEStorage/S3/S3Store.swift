import AsyncHTTPClient
import CWALESupport
import Crypto
import NIOCore
import NIOHTTP1
import NIOConcurrencyHelpers
import NIOSSL
import WALECodec
import WALECore

/// The `s3://` backend over async-http-client: SigV4 on every request, deadlines on every request,
/// bounded retries with backoff and jitter on 5xx, SlowDown and connection failures.
public struct S3Store: ObjectStore {
    public let config: S3Configuration
    let logger: Logger
    let retry: Retry
    /// Whole-request deadline for small requests (their bodies included); streamed bodies are
    /// bounded by the idle timeout and the minimum-progress watchdog (TransferLimits).
    var requestTimeout: TimeAmount { config.limits.deadline }

    /// Retries of transient failures (kept local so storage does not depend on the engine).
    public struct Retry: Sendable {
        public var attempts: Int
        public var baseDelay: Double
        public init(attempts: Int, baseDelay: Double = 0.2) {
            self.attempts = max(1, attempts)
            self.baseDelay = baseDelay
        }

        /// The sleep after failure number `n` (1-based): a random value in [d/2, d] with
        /// d = min(8 s, baseDelay · 2^(n-1)).
        func delay(afterFailure n: Int) -> Double {
            let d = min(8, baseDelay * Double(1 << min(n - 1, 20)))
            return d / 2 + Double.random(in: 0...(d / 2))
        }

        /// Runs `body`, again after I/O errors (the transient kind) with exponential backoff
        /// (at most 8 s) and full jitter, up to `attempts` in all. The Azure store uses it too.
        func run<R>(_ what: String, logger: Logger, _ body: () async throws -> R) async throws -> R {
            var failure = 0
            while true {
                do {
                    return try await body()
                } catch let e as WALEError where e.kind == .io && !e.retriesExhausted {
                    guard failure + 1 < attempts else { throw e.exhaustingRetries() }
                    failure += 1
                    let wait = delay(afterFailure: failure)
                    logger.warning("retrying \(what)", detail: e.description, hint: "attempt \(failure + 1) of \(attempts)")
                    try await Task.sleep(nanoseconds: UInt64(wait * 1e9))
                }
            }
        }
    }

    let client: HTTPClient
    /// Upload bytes buffered in memory at once, across every upload of this store.
    let budget: ByteBudget
    /// Temporary keys from the instance metadata service; nil for fixed keys.
    let credentialCache: CredentialCache?

    public init(config: S3Configuration, logger: Logger, retry: Retry) throws {
        self.config = config
        self.logger = logger
        self.retry = retry
        client = try Self.client(caBundle: config.caBundle, limits: config.limits)
        budget = ByteBudget(capacity: config.uploadMemory)
        if case .instanceProfile(let endpoint) = config.credentials {
            let imds = InstanceMetadataClient(endpoint: endpoint, client: try Self.client(caBundle: nil, limits: config.limits))
            let log = logger
            credentialCache = CredentialCache {
                let c = try await imds.fetch()
                log.info(
                    "fetched credentials from the instance metadata service",
                    detail: c.expiration.map { "they expire at \(UTCTime(epochSeconds: $0).isoNoZone + "Z")" } ?? "they do not expire")
                return c
            }
        } else {
            credentialCache = nil
        }
    }

    /// One client per trust configuration for the process: connection pool, connect and
    /// idle-read timeouts, certificate verification always on.
    static func client(caBundle: String?, limits: TransferLimits) throws -> HTTPClient {
        let id = "\(caBundle ?? "")|\(limits.idleRead.nanoseconds)"
        return try clients.withLockedValue { clients throws(WALEError) in
            if let c = clients[id] { return c }
            let c = try makeClient(caBundle: caBundle, idleRead: limits.idleRead)
            clients[id] = c
            return c
        }
    }
    static let clients = NIOLockedValueBox<[String: HTTPClient]>([:])

    static func makeClient(caBundle: String?, idleRead: TimeAmount) throws(WALEError) -> HTTPClient {
        var c = HTTPClient.Configuration()
        c.timeout = .init(connect: .seconds(5), read: idleRead)
        c.connectionPool = .init(idleTimeout: .seconds(30))
        c.decompression = .disabled
        // HTTP/1.1 only, like S3 itself: over TLS async-http-client would negotiate HTTP/2 with
        // servers that offer it (SeaweedFS does), and its HTTP/2 path trapped under parallel
        // streaming uploads here (1 backup-push in 6 on the benchmark cluster).
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

    func currentCredentials() async throws -> AWSCredentials {
        switch config.credentials {
        case .fixed(let c): return c
        case .instanceProfile: return try await credentialCache!.credentials()
        }
    }

    // MARK: requests

    struct Response {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
    }

    func url(_ path: String, _ query: [(String, String)]) -> String {
        let q = query.map { SigV4Signer.uriEncode($0.0, keepSlash: false) + "=" + SigV4Signer.uriEncode($0.1, keepSlash: false) }
        return "\(config.scheme)://\(config.authority)\(path)" + (q.isEmpty ? "" : "?" + q.joined(separator: "&"))
    }

    func signedRequest(
        _ method: HTTPMethod, path: String, query: [(String, String)] = [], headers extra: [(String, String)] = [], body: ByteBuffer? = nil,
        handle: BodyHandle? = nil
    ) async throws -> HTTPClientRequest {
        let credentials = try await currentCredentials()
        // Over TLS a body that carries its own checksum (CRC32C or Content-MD5) is sent
        // UNSIGNED-PAYLOAD, as the AWS SDKs do: the server checks the checksum, TLS protects both,
        // and a SHA-256 pass over the body is saved.
        let unsigned = config.scheme == "https" && extra.contains { $0.0 == "content-md5" || $0.0 == "x-amz-checksum-crc32c" }
        let payloadHash = unsigned ? "UNSIGNED-PAYLOAD" : body.map { b in b.withUnsafeReadableBytes { hexString(SHA256.hash(data: $0)) } } ?? SigV4Signer.emptyPayloadHash
        let date = SigV4Signer.amzDate(POSIX.now())
        var headers: [(String, String)] = [("host", config.authority), ("x-amz-date", date), ("x-amz-content-sha256", payloadHash)]
        if let t = credentials.sessionToken { headers.append(("x-amz-security-token", t)) }
        headers += extra
        let auth = SigV4Signer(region: config.region).authorization(
            method: method.rawValue, path: path, query: query, headers: headers, payloadHash: payloadHash, amzDate: date,
            credentials: credentials)
        var r = HTTPClientRequest(url: url(path, query))
        r.method = method
        for (k, v) in headers where k != "host" { r.headers.add(name: k, value: v) }
        r.headers.add(name: "Authorization", value: auth)
        if let body {
            // Slices of the buffer (shared storage, no copy), handed over as the connection
            // drains: TLS then encrypts 256 KiB at a time, not a second copy of the whole body.
            // The handle lets the caller drop the storage once the attempt is over, whatever the
            // HTTP client still holds on to: part buffers must not outlive their memory budget.
            let h = handle ?? BodyHandle()
            h.set(body)
            r.body = .stream(BufferSlices(handle: h, group: client.eventLoopGroup), length: .known(Int64(body.readableBytes)))
            r.headers.replaceOrAdd(name: "Content-Length", value: String(body.readableBytes))
        }
        return r
    }

    /// Sends a small request and reads the whole answer, retrying transient failures.
    func send(
        _ method: HTTPMethod, key: String?, query: [(String, String)] = [], headers: [(String, String)] = [], body: ByteBuffer? = nil,
        what: String
    ) async throws -> Response {
        let path = key.map { config.path($0) } ?? config.bucketPath
        return try await withRetries(what) {
            let handle = BodyHandle()
            defer { handle.clear() }
            let req = try await signedRequest(method, path: path, query: query, headers: headers, body: body, handle: handle)
            do {
                let deadline = POSIX.monotonic() + config.limits.requestTimeout
                let resp = try await client.execute(req, timeout: requestTimeout)
                let data = try await collectBody(resp.body, limit: 64 << 20, deadline: deadline, what: what)
                let r = Response(status: Int(resp.status.code), headers: resp.headers, body: data)
                try await refreshIfExpired(r, what)
                // BadDigest: the body the server received does not match its checksum, so it was
                // damaged on the way; sending it again is the cure.
                if r.status >= 500 || r.status == 429 || ["SlowDown", "BadDigest"].contains(s3Code(r.body)) {
                    throw transientError(r, what)
                }
                return r
            } catch let e as WALEError {
                throw e
            } catch {
                throw requestFailed(error, what)
            }
        }
    }

    func withRetries<R>(_ what: String, _ body: () async throws -> R) async throws -> R {
        try await retry.run(what, logger: logger, body)
    }

    /// Instance-profile keys S3 calls expired are dropped and the request retried with fresh ones.
    func refreshIfExpired(_ r: Response, _ what: String) async throws {
        guard let cache = credentialCache, r.status == 400 || r.status == 403,
            let code = s3Code(r.body), ["ExpiredToken", "TokenRefreshRequired", "InvalidToken"].contains(code)
        else { return }
        await cache.invalidate()
        throw WALEError(.io, "S3 answered \(code) to \(what); fetching new instance credentials")
    }

    /// A request that got no answer: TLS verification failures are the user's to fix (and not
    /// retried); anything else (refused, reset, timed out) is transient.
    func requestFailed(_ error: any Error, _ what: String) -> WALEError {
        if let e = error as? WALEError { return e }
        if error is NIOSSLError || error is NIOSSLExtraError || "\(error)".contains("handshakeFailed") {
            return WALEError(
                .user, "TLS verification of \(config.scheme)://\(config.authority) failed: \(what)", detail: redactedDescription(error),
                hint: "if the server uses a private CA, set WALE_S3_CA_BUNDLE (or AWS_CA_BUNDLE) to its PEM file")
        }
        return WALEError(.io, "S3 request failed: \(what)", detail: redactedDescription(error), hint: "is \(config.scheme)://\(config.authority) reachable?")
    }

    func transientError(_ r: Response, _ what: String) -> WALEError {
        WALEError(.io, "S3 answered \(r.status) \(s3Code(r.body) ?? "") to \(what)", detail: s3Message(r.body))
    }

    /// A clear error for a failed answer: names the bucket and key, never a secret or signature.
    func failure(_ r: Response, _ what: String, key: String?) -> WALEError {
        let code = s3Code(r.body) ?? "HTTP \(r.status)"
        let target = "s3://\(config.bucket)/\(key ?? "")"
        switch code {
        case "NoSuchBucket":
            return WALEError(.user, "the bucket \(config.bucket) does not exist", detail: what, hint: "create it, or fix the prefix")
        case "AccessDenied", "AllAccessDisabled":
            return WALEError(.user, "access denied to \(target)", detail: what, hint: "the credentials lack permission (wal-e needs Get, Put, List and Delete)")
        case "InvalidAccessKeyId":
            return WALEError(.user, "AWS_ACCESS_KEY_ID is not known to the S3 service", detail: what)
        case "SignatureDoesNotMatch":
            return WALEError(.user, "S3 rejected the request signature for \(target)", detail: what, hint: "check AWS_SECRET_ACCESS_KEY (and the region)")
        case "RequestTimeTooSkewed":
            return WALEError(.user, "this machine's clock is too far from S3's", detail: what, hint: "synchronise the clock (NTP)")
        case "ExpiredToken", "TokenRefreshRequired":
            return WALEError(.user, "the AWS session token has expired", detail: what, hint: "refresh AWS_SESSION_TOKEN")
        default:
            return WALEError(.io, "S3 refused \(what) on \(target): \(code)", detail: s3Message(r.body))
        }
    }

    // MARK: ObjectStore

    public var storesLateMetadata: Bool { true }

    public func info(_ key: String) async throws -> ObjectInfo? {
        let r = try await send(.HEAD, key: key, what: "HEAD \(key)")
        if r.status == 404 { return nil }
        guard r.status == 200 else { throw failure(r, "HEAD \(key)", key: key) }
        var meta: [String: String] = [:]
        for h in r.headers where h.name.lowercased().hasPrefix("x-amz-meta-") { meta[String(h.name.lowercased().dropFirst(11))] = h.value }
        return ObjectInfo(
            key: key, size: Int64(r.headers.first(name: "content-length") ?? "0") ?? 0,
            lastModified: r.headers.first(name: "last-modified").flatMap(parseHTTPDate) ?? 0, metadata: meta)
    }

    public func read<R>(_ key: String, _ body: (any ByteSource) async throws -> R) async throws -> R {
        let first = try await get(key, range: [])
        let source = ResumableBody(
            first: first, what: "GET s3://\(config.bucket)/\(key)", limits: config.limits,
            retry: RetryBudget(retry, logger: logger)
        ) { offset, etag in
            try await get(key, range: rangeHeaders(offset: offset, etag: etag))
        }
        return try await body(source)
    }

    /// A GET whose head said 200 (or 206 for a range); anything else becomes its error.
    func get(_ key: String, range: [(String, String)]) async throws -> HTTPClientResponse {
        try await withRetries("GET \(key)") {
            let req = try await signedRequest(.GET, path: config.path(key), headers: range)
            let resp: HTTPClientResponse
            do {
                resp = try await client.execute(req, timeout: requestTimeout)
            } catch {
                throw requestFailed(error, "GET \(key)")
            }
            if resp.status == .ok || resp.status == .partialContent || resp.status == .preconditionFailed { return resp }
            let data = try await collectBody(resp.body, limit: 1 << 20, deadline: POSIX.monotonic() + config.limits.requestTimeout, what: "GET \(key)")
            let r = Response(status: Int(resp.status.code), headers: resp.headers, body: data)
            try await refreshIfExpired(r, "GET \(key)")
            // A missing bucket is a configuration error, not a missing object: wal-fetch must not
            // tell PostgreSQL that the archive ends here.
            if r.status == 404 && s3Code(r.body) != "NoSuchBucket" {
                throw WALEError(.notFound, "object \(key) does not exist", detail: "s3://\(config.bucket)/\(key)")
            }
            if r.status >= 500 || r.status == 429 { throw transientError(r, "GET \(key)") }
            throw failure(r, "GET \(key)", key: key)
        }
    }

    public func write(_ key: String, from source: any ByteSource, options: WriteOptions) async throws -> WriteOutcome {
        if options.ifAbsent, options.gate == nil, try await info(key) != nil { return .alreadyExists }
        let parts = PartReader(source, size: config.partSize)
        // One PUT when the whole object fits the first part; its metadata can then include what is
        // known only at the end. The caller's check ran while the part was read; nothing is sent
        // before it says so. Every buffered byte is held against the store's budget.
        guard let (firstBytes, ended, firstHold) = try await readFirstPart(parts, options: options, budget: budget) else { return .alreadyExists }
        var first = firstBytes
        var headers: [(String, String)] = []
        if let ct = options.contentType { headers.append(("content-type", ct)) }
        if let sse = config.serverSideEncryption { headers.append(("x-amz-server-side-encryption", sse)) }
        if let kms = config.kmsKeyID { headers.append(("x-amz-server-side-encryption-aws-kms-key-id", kms)) }
        if let sc = config.storageClass { headers.append(("x-amz-storage-class", sc)) }
        for (k, v) in options.metadata { headers.append(("x-amz-meta-" + k, v)) }
        if ended {
            var h = headers + [checksumHeader(first)]
            for (k, v) in options.lateMetadata?.value() ?? [:] { h.append(("x-amz-meta-" + k, v)) }
            if options.ifAbsent { h.append(("if-none-match", "*")) }
            let r: Response
            do {
                r = try await send(.PUT, key: key, headers: h, body: first, what: "PUT \(key)")
                await budget.release(firstHold)
            } catch {
                await budget.release(firstHold)
                throw error
            }
            if r.status == 412 { return .alreadyExists }
            guard r.status == 200 else { throw failure(r, "PUT \(key)", key: key) }
            return .created
        }
        // Multipart: fixed-size parts, several in flight, each retried on its own; each part holds
        // its share of the budget until it is uploaded.
        // Keep only the first part's share: an upload never holds budget while it waits for more
        // (only parts in flight hold it, and they finish on their own), so uploads cannot deadlock.
        // The carried-over slack (at most 1 MiB past a part, more only for a known-size WAL file
        // above 16 MiB) is briefly outside the count.
        await budget.release(max(0, firstHold - config.partSize))
        // Handed over in a box: this frame's copy would otherwise pin the first part's storage
        // until the whole object is uploaded.
        let box = PartBox(first)
        first = ByteBuffer()
        return try await multipartUpload(key, headers: headers, first: box, parts: parts)
    }

    func multipartUpload(_ key: String, headers: [(String, String)], first: PartBox, parts: PartReader) async throws -> WriteOutcome {
        let start: Response
        // Parts carrying a flexible checksum need the algorithm declared up front.
        let createHeaders = headers + (config.checksum == .crc32c ? [("x-amz-checksum-algorithm", "CRC32C")] : [])
        do {
            start = try await send(
                .POST, key: key, query: [("uploads", "")], headers: createHeaders, body: ByteBuffer(), what: "CreateMultipartUpload \(key)")
        } catch {
            await budget.release(config.partSize)
            throw error
        }
        guard start.status == 200, let uploadID = xmlValues(start.body, "UploadId").first else {
            await budget.release(config.partSize)
            throw failure(start, "CreateMultipartUpload \(key)", key: key)
        }
        let budget = self.budget
        let held = config.partSize
        do {
            var etags: [(Int, UploadedPart)] = []
            try await withThrowingTaskGroup(of: (Int, UploadedPart).self) { group in
                var number = 1
                var inFlight = 0
                var part: ByteBuffer? = first.take()
                // No binding of the part's buffer: one would live on through the wait for budget
                // and the read of the next part, an extra part per upload beyond the budget.
                while let size = part?.readableBytes, size > 0 || number == 1 {
                    if inFlight >= config.partsInFlight {
                        do {
                            if let done = try await group.next() {
                                etags.append(done)
                                inFlight -= 1
                            }
                        } catch {
                            await budget.release(held)  // this part never went up
                            throw error
                        }
                    }
                    let n = number
                    // The task takes the buffer out of the box, so it is freed when the part is
                    // done, before its budget is given back (a finished child task's captures can
                    // live until the group collects it).
                    let box = PartBox(part!)
                    part = nil
                    group.addTask {
                        do {
                            let etag = try await uploadPart(key, uploadID, n, box.take())
                            await budget.release(held)
                            return (n, etag)
                        } catch {
                            await budget.release(held)
                            throw error
                        }
                    }
                    inFlight += 1
                    number += 1
                    await budget.acquire(held)
                    let next: ByteBuffer
                    do { next = try await parts.next() } catch {
                        await budget.release(held)
                        throw error
                    }
                    if next.readableBytes == 0 { await budget.release(held) }
                    part = next.readableBytes == 0 ? nil : next
                }
                for try await done in group { etags.append(done) }
            }
            etags.sort { $0.0 < $1.0 }
            let xml = "<CompleteMultipartUpload>" + etags.map { n, part in
                "<Part><PartNumber>\(n)</PartNumber><ETag>\(xmlEscape(part.etag))</ETag>"
                    + (part.crc32c.map { "<ChecksumCRC32C>\($0)</ChecksumCRC32C>" } ?? "") + "</Part>"
            }.joined() + "</CompleteMultipartUpload>"
            let done = try await send(.POST, key: key, query: [("uploadId", uploadID)], body: ByteBuffer(string: xml), what: "CompleteMultipartUpload \(key)")
            guard done.status == 200, s3Code(done.body) == nil else { throw failure(done, "CompleteMultipartUpload \(key)", key: key) }
            return .created
        } catch {
            _ = try? await send(.DELETE, key: key, query: [("uploadId", uploadID)], what: "AbortMultipartUpload \(key)")
            throw error
        }
    }

    /// A part as CompleteMultipartUpload must name it.
    struct UploadedPart: Sendable {
        var etag: String
        var crc32c: String?
    }

    func uploadPart(_ key: String, _ uploadID: String, _ n: Int, _ body: ByteBuffer) async throws -> UploadedPart {
        let checksum = checksumHeader(body)
        let r = try await send(
            .PUT, key: key, query: [("partNumber", String(n)), ("uploadId", uploadID)], headers: [checksum],
            body: body, what: "UploadPart \(n) of \(key)")
        guard r.status == 200, let etag = r.headers.first(name: "etag") else { throw failure(r, "UploadPart \(n) of \(key)", key: key) }
        return UploadedPart(etag: etag, crc32c: config.checksum == .crc32c ? checksum.1 : nil)
    }

    /// The header that lets the server check a body it received.
    func checksumHeader(_ body: ByteBuffer) -> (String, String) {
        switch config.checksum {
        case .crc32c: return ("x-amz-checksum-crc32c", crc32cBase64(body))
        case .md5: return ("content-md5", md5Base64(body))
        }
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        var out: [ObjectInfo] = []
        var token: String?
        repeat {
            var q: [(String, String)] = [("list-type", "2"), ("prefix", prefix)]
            if let token { q.append(("continuation-token", token)) }
            let r = try await send(.GET, key: nil, query: q, what: "ListObjectsV2 \(prefix)")
            guard r.status == 200 else { throw failure(r, "ListObjectsV2 \(prefix)", key: prefix) }
            for c in xmlBlocks(r.body, "Contents") {
                guard let k = xmlValues(c, "Key").first else { continue }
                let modified = xmlValues(c, "LastModified").first
                out.append(
                    ObjectInfo(
                        key: k, size: Int64(xmlValues(c, "Size").first ?? "0") ?? 0,
                        lastModified: modified.flatMap(parseISO8601) ?? 0, lastModifiedText: modified))
            }
            token = xmlValues(r.body, "IsTruncated").first == "true" ? xmlValues(r.body, "NextContinuationToken").first : nil
        } while token != nil
        return out
    }

    public func delete(_ keys: [String]) async throws {
        var i = 0
        while i < keys.count {
            let batch = keys[i..<min(keys.count, i + 1000)]
            i += 1000
            let xml = "<Delete><Quiet>true</Quiet>" + batch.map { "<Object><Key>\(xmlEscape($0))</Key></Object>" }.joined() + "</Delete>"
            let body = ByteBuffer(string: xml)
            let r = try await send(.POST, key: nil, query: [("delete", "")], headers: [("content-md5", md5Base64(body))], body: body, what: "DeleteObjects")
            guard r.status == 200 else { throw failure(r, "DeleteObjects", key: batch.first) }
            let errors = xmlBlocks(r.body, "Error").compactMap { e -> String? in
                guard let k = xmlValues(e, "Key").first else { return nil }
                return "\(k)\t\(xmlValues(e, "Code").first ?? "")\t\(xmlValues(e, "Message").first ?? "")"
            }
            if !errors.isEmpty {
                throw WALEError(.io, "S3 could not delete \(errors.count) keys", detail: errors.prefix(10).joined(separator: "; "))
            }
        }
    }
}


func md5Base64(_ b: ByteBuffer) -> String { b.withUnsafeReadableBytes { base64(Array(Insecure.MD5.hash(data: $0))) } }

/// S3's CRC32C form: the four big-endian bytes of the CRC, base64.
func crc32cBase64(_ b: ByteBuffer) -> String {
    let c = b.withUnsafeReadableBytes { wale_crc32c(0, $0.baseAddress, $0.count) }
    return base64([UInt8(c >> 24), UInt8(truncatingIfNeeded: c >> 16), UInt8(truncatingIfNeeded: c >> 8), UInt8(truncatingIfNeeded: c)])
}

func base64(_ bytes: [UInt8]) -> String {
    let t = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    var out: [UInt8] = []
    var i = 0
    while i < bytes.count {
        let n = min(3, bytes.count - i)
        let v = (UInt32(bytes[i]) << 16) | (n > 1 ? UInt32(bytes[i + 1]) << 8 : 0) | (n > 2 ? UInt32(bytes[i + 2]) : 0)
        out.append(t[Int(v >> 18 & 63)])
        out.append(t[Int(v >> 12 & 63)])
        out.append(n > 1 ? t[Int(v >> 6 & 63)] : UInt8(ascii: "="))
        out.append(n > 2 ? t[Int(v & 63)] : UInt8(ascii: "="))
        i += 3
    }
    return String(decoding: out, as: UTF8.self)
}
