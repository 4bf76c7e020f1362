import AsyncHTTPClient
import Crypto
import NIOCore
import NIOHTTP1
import WALECodec
import WALECore

/// The `s3://` backend: SigV4 on every request, on the shared HTTP core (deadlines, retries,
/// resumed downloads) and parted-upload driver (multipart uploads).
public struct S3Store: PartedUploadTarget {
    public let config: S3Configuration
    let core: HTTPCore
    /// Upload bytes buffered in memory at once, across every upload of this store.
    let budget: ByteBudget
    /// Temporary keys from the instance metadata service; nil for fixed keys.
    let credentialCache: CredentialCache?
    var partSize: Int { config.partSize }
    var partsInFlight: Int { config.partsInFlight }

    public init(config: S3Configuration, logger: Logger, retry: RetryPolicy) throws {
        self.config = config
        core = try HTTPCore(
            service: "S3", endpoint: "\(config.scheme)://\(config.authority)", caBundle: config.caBundle,
            caVariable: "WALE_S3_CA_BUNDLE (or AWS_CA_BUNDLE)", limits: config.limits, retry: retry, logger: logger)
        budget = ByteBudget(capacity: config.uploadMemory)
        if case .instanceProfile(let endpoint) = config.credentials {
            let imds = InstanceMetadataClient(endpoint: endpoint, client: try HTTPClients.shared(caBundle: nil, limits: config.limits))
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

    func currentCredentials() async throws -> AWSCredentials {
        switch config.credentials {
        case .fixed(let c): return c
        case .instanceProfile: return try await credentialCache!.credentials()
        }
    }

    // MARK: requests

    typealias Response = HTTPCore.Response

    func signedRequest(
        _ method: HTTPMethod, path: String, query: [(String, String)] = [], headers extra: [(String, String)] = [], body: (any RequestBody)? = nil,
        handle: BodyHandle
    ) async throws -> HTTPClientRequest {
        let credentials = try await currentCredentials()
        // Over TLS a body that carries its own checksum (CRC32C or Content-MD5) is sent
        // UNSIGNED-PAYLOAD, as the AWS SDKs do: the server checks the checksum, TLS protects both,
        // and a SHA-256 pass over the body is saved.
        let unsigned = config.scheme == "https" && extra.contains { $0.0 == "content-md5" || $0.0 == "x-amz-checksum-crc32c" }
        var payloadHash = SigV4Signer.emptyPayloadHash
        if unsigned {
            payloadHash = SigV4Signer.unsignedPayload
        } else if let body {
            var h = SHA256()
            try body.forEachStretch { h.update(bufferPointer: $0) }
            payloadHash = hexString(h.finalize())
        }
        let date = SigV4Signer.amzDate(POSIX.now())
        var headers: [(String, String)] = [("host", config.authority), ("x-amz-date", date), ("x-amz-content-sha256", payloadHash)]
        if let t = credentials.sessionToken { headers.append(("x-amz-security-token", t)) }
        headers += extra
        let auth = SigV4Signer(region: config.region).authorization(
            method: method.rawValue, path: path, query: query, headers: headers, payloadHash: payloadHash, amzDate: date,
            credentials: credentials)
        var r = HTTPClientRequest(url: "\(config.scheme)://\(config.authority)\(path)" + queryString(query))
        r.method = method
        for (k, v) in headers where k != "host" { r.headers.add(name: k, value: v) }
        r.headers.add(name: "Authorization", value: auth)
        if let body { core.attach(body, to: &r, handle: handle) }
        return r
    }

    /// Sends a small request and reads the whole answer, retrying transient failures.
    func send(
        _ method: HTTPMethod, key: String?, query: [(String, String)] = [], headers: [(String, String)] = [], body: (any RequestBody)? = nil,
        what: String
    ) async throws -> Response {
        let path = key.map { config.path($0) } ?? config.bucketPath
        return try await core.send(what) { handle in
            try await signedRequest(method, path: path, query: query, headers: headers, body: body, handle: handle)
        } check: { r in
            try await refreshIfExpired(r, what)
            // BadDigest: the body the server received does not match its checksum, so it was
            // damaged on the way; sending it again is the cure.
            if HTTPCore.isTransientStatus(r.status) || ["SlowDown", "BadDigest"].contains(s3Code(r.body)) {
                throw transientError(r, what)
            }
        }
    }

    /// Instance-profile keys S3 calls expired are dropped and the request retried with fresh ones.
    func refreshIfExpired(_ r: Response, _ what: String) async throws {
        guard let cache = credentialCache, r.status == 400 || r.status == 403,
            let code = s3Code(r.body), ["ExpiredToken", "TokenRefreshRequired", "InvalidToken"].contains(code)
        else { return }
        await cache.invalidate()
        throw WALEError(.io, "S3 answered \(code) to \(what); fetching new instance credentials")
    }

    func transientError(_ r: Response, _ what: String) -> WALEError {
        WALEError(.io, "S3 answered \(r.status) \(s3Code(r.body) ?? "") to \(what)", detail: s3Message(r.body), hint: sseHint(r, what))
    }

    /// S3-compatible servers without a key service (SeaweedFS, MinIO) answer a write that asks for
    /// server-side encryption (WAL-E's default, AES256) with 500 or 501: the error says what to set.
    func sseHint(_ r: Response, _ what: String) -> String? {
        guard config.serverSideEncryption != nil, r.status == 500 || r.status == 501,
            what.hasPrefix("PUT") || what.contains("Upload")
        else { return nil }
        return "if this S3-compatible server has no server-side encryption (SeaweedFS or MinIO without a key service), set WALE_S3_SSE=none"
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
            return WALEError(.io, "S3 refused \(what) on \(target): \(code)", detail: s3Message(r.body), hint: sseHint(r, what))
        }
    }

    // MARK: ObjectStore

    public var storesLateMetadata: Bool { true }

    public func info(_ key: String) async throws -> ObjectInfo? {
        var r = try await send(.HEAD, key: key, what: "HEAD \(key)")
        if r.status == 400 || r.status == 403 {
            // A HEAD answer has no body, so no error code says why (an expired session token, a
            // wrong secret, a denied key): a one-byte GET of the same key asks. Its check renews
            // instance-profile keys S3 calls expired; if it then succeeds, HEAD again.
            let probe = try await send(.GET, key: key, headers: [("range", "bytes=0-0")], what: "GET \(key) (why HEAD was refused)")
            if probe.status >= 400 && probe.status != 404 && probe.status != 416 { throw failure(probe, "HEAD \(key)", key: key) }
            r = try await send(.HEAD, key: key, what: "HEAD \(key)")
        }
        if r.status == 404 { return nil }
        guard r.status == 200 else { throw failure(r, "HEAD \(key)", key: key) }
        let meta = HTTPCore.userMetadata(r.headers, prefix: "x-amz-meta-")
        return ObjectInfo(
            key: key, size: Int64(r.headers.first(name: "content-length") ?? "0") ?? 0,
            lastModified: r.headers.first(name: "last-modified").flatMap(parseHTTPDate) ?? 0, metadata: meta)
    }

    public func read<R>(_ key: String, _ body: (any ByteSource) async throws -> R) async throws -> R {
        try await core.read(
            "GET s3://\(config.bucket)/\(key)", metadata: { HTTPCore.userMetadata($0, prefix: "x-amz-meta-") },
            get: { range in try await get(key, range: range) }, body)
    }

    /// A GET whose head said 200 (or 206 for a range); anything else becomes its error.
    func get(_ key: String, range: [(String, String)]) async throws -> HTTPClientResponse {
        let what = "GET \(key)"
        return try await core.open(what) { handle in
            try await signedRequest(.GET, path: config.path(key), headers: range, handle: handle)
        } refuse: { r in
            try await refreshIfExpired(r, what)
            // A missing bucket is a configuration error, not a missing object: wal-fetch must not
            // tell PostgreSQL that the archive ends here.
            if r.status == 404 && s3Code(r.body) != "NoSuchBucket" {
                throw WALEError(.notFound, "object \(key) does not exist", detail: "s3://\(config.bucket)/\(key)")
            }
            if HTTPCore.isTransientStatus(r.status) { throw transientError(r, what) }
            throw failure(r, what, key: key)
        }
    }

    public func write(_ key: String, from source: any ByteSource, options: WriteOptions) async throws -> WriteOutcome {
        try await partedWrite(key, from: source, options: options)
    }

    /// The headers every new object gets (its metadata known up front included).
    func objectHeaders(_ options: WriteOptions, metadata: [String: String]) -> [(String, String)] {
        var headers: [(String, String)] = []
        if let ct = options.contentType { headers.append(("content-type", ct)) }
        if let sse = config.serverSideEncryption { headers.append(("x-amz-server-side-encryption", sse)) }
        if let kms = config.kmsKeyID { headers.append(("x-amz-server-side-encryption-aws-kms-key-id", kms)) }
        if let sc = config.storageClass { headers.append(("x-amz-storage-class", sc)) }
        for (k, v) in metadata.sorted(by: { $0.key < $1.key }) { headers.append(("x-amz-meta-" + k, v)) }
        return headers
    }

    func putWhole(_ key: String, _ body: any RequestBody, metadata: [String: String], options: WriteOptions) async throws -> WriteOutcome {
        var h = try objectHeaders(options, metadata: metadata) + [checksumHeader(body)]
        if options.ifAbsent { h.append(("if-none-match", "*")) }
        let r = try await send(.PUT, key: key, headers: h, body: body, what: "PUT \(key)")
        if r.status == 412 { return .alreadyExists }
        guard r.status == 200 else { throw failure(r, "PUT \(key)", key: key) }
        return .created
    }

    func begin(_ key: String, options: WriteOptions) async throws -> Multipart {
        try await startMultipart(key, options: options, declaringChecksum: true)
    }

    /// `declaringChecksum: false`: parts go with Content-MD5 (an upload with copied parts, whose
    /// CRC32C S3 would have to give back for each).
    func startMultipart(_ key: String, options: WriteOptions, declaringChecksum: Bool) async throws -> Multipart {
        // Parts carrying a flexible checksum need the algorithm declared up front.
        let declare = declaringChecksum && config.checksum == .crc32c
        let headers = objectHeaders(options, metadata: options.metadata) + (declare ? [("x-amz-checksum-algorithm", "CRC32C")] : [])
        let start = try await send(.POST, key: key, query: [("uploads", "")], headers: headers, body: ByteBuffer(), what: "CreateMultipartUpload \(key)")
        guard start.status == 200, let uploadID = xmlValues(start.body, "UploadId").first else {
            throw failure(start, "CreateMultipartUpload \(key)", key: key)
        }
        return Multipart(store: self, key: key, uploadID: uploadID)
    }

    /// One multipart upload: fixed-size parts each retried on its own, completed in order, aborted
    /// on failure (S3 keeps the parts of an upload nobody completes or aborts).
    struct Multipart: PartSession {
        let store: S3Store
        let key: String
        let uploadID: String

        /// A part as CompleteMultipartUpload must name it.
        struct Part: Sendable {
            var etag: String
            var crc32c: String?
        }

        func put(part n: Int, _ body: ByteBuffer) async throws -> Part {
            let checksum = try store.checksumHeader(body)
            let what = "UploadPart \(n) of \(key)"
            let r = try await store.send(
                .PUT, key: key, query: [("partNumber", String(n)), ("uploadId", uploadID)], headers: [checksum], body: body, what: what)
            guard r.status == 200, let etag = r.headers.first(name: "etag") else { throw store.failure(r, what, key: key) }
            return Part(etag: etag, crc32c: store.config.checksum == .crc32c ? checksum.1 : nil)
        }

        /// The metadata went with CreateMultipartUpload; S3 cannot add more at the end.
        func commit(_ parts: [Part], metadata: [String: String]) async throws -> WriteOutcome {
            let xml = "<CompleteMultipartUpload>" + parts.enumerated().map { i, part in
                "<Part><PartNumber>\(i + 1)</PartNumber><ETag>\(xmlEscape(part.etag))</ETag>"
                    + (part.crc32c.map { "<ChecksumCRC32C>\($0)</ChecksumCRC32C>" } ?? "") + "</Part>"
            }.joined() + "</CompleteMultipartUpload>"
            let what = "CompleteMultipartUpload \(key)"
            let done = try await store.send(.POST, key: key, query: [("uploadId", uploadID)], body: ByteBuffer(string: xml), what: what)
            guard done.status == 200, s3Code(done.body) == nil else { throw store.failure(done, what, key: key) }
            return .created
        }

        func abort() async {
            _ = try? await store.send(.DELETE, key: key, query: [("uploadId", uploadID)], what: "AbortMultipartUpload \(key)")
        }
    }

    /// The header that lets the server check a body it received.
    func checksumHeader(_ body: any RequestBody) throws -> (String, String) {
        switch config.checksum {
        case .crc32c: return ("x-amz-checksum-crc32c", try crc32cBase64(body))
        case .md5: return ("content-md5", try md5Base64(body))
        }
    }

    public func list(prefix: String) async throws -> [ObjectInfo] {
        try await listAllPages { token in
            var q: [(String, String)] = [("list-type", "2"), ("prefix", prefix)]
            if let token { q.append(("continuation-token", token)) }
            let r = try await send(.GET, key: nil, query: q, what: "ListObjectsV2 \(prefix)")
            guard r.status == 200 else { throw failure(r, "ListObjectsV2 \(prefix)", key: prefix) }
            let objects = xmlBlocks(r.body, "Contents").compactMap { c -> ObjectInfo? in
                guard let k = xmlValues(c, "Key").first else { return nil }
                let modified = xmlValues(c, "LastModified").first
                return ObjectInfo(
                    key: k, size: Int64(xmlValues(c, "Size").first ?? "0") ?? 0, lastModified: modified.flatMap(parseISO8601) ?? 0,
                    lastModifiedText: modified)
            }
            return (objects, xmlValues(r.body, "IsTruncated").first == "true" ? xmlValues(r.body, "NextContinuationToken").first : nil)
        }
    }

    /// Multipart uploads under `prefix` initiated before the cut-off (ListMultipartUploads, every
    /// page), each aborted.
    public func sweepAbandonedUploads(prefix: String, olderThan: Double, now: Double) async throws -> Int {
        var stale: [(key: String, id: String)] = []
        var marker: (key: String, id: String)?
        repeat {
            var q: [(String, String)] = [("uploads", ""), ("prefix", prefix)]
            if let marker { q += [("key-marker", marker.key), ("upload-id-marker", marker.id)] }
            let r = try await send(.GET, key: nil, query: q, what: "ListMultipartUploads \(prefix)")
            guard r.status == 200 else { throw failure(r, "ListMultipartUploads \(prefix)", key: prefix) }
            for u in xmlBlocks(r.body, "Upload") {
                guard let key = xmlValues(u, "Key").first, let id = xmlValues(u, "UploadId").first,
                    let initiated = xmlValues(u, "Initiated").first.flatMap(parseISO8601), initiated < now - olderThan
                else { continue }
                stale.append((key, id))
            }
            let next = (xmlValues(r.body, "NextKeyMarker").first, xmlValues(r.body, "NextUploadIdMarker").first)
            marker = xmlValues(r.body, "IsTruncated").first == "true" ? next.0.map { ($0, next.1 ?? "") } : nil
        } while marker != nil
        for u in stale {
            let what = "AbortMultipartUpload \(u.key)"
            let r = try await send(.DELETE, key: u.key, query: [("uploadId", u.id)], what: what)
            guard r.status / 100 == 2 || r.status == 404 else { throw failure(r, what, key: u.key) }
        }
        return stale.count
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


func s3Code(_ body: [UInt8]) -> String? { xmlErrorCode(body) }
func s3Message(_ body: [UInt8]) -> String? { xmlValues(body, "Message").first }
