import WALECore

/// Where and how to reach an S3 bucket, resolved from WAL-E's settings and the AWS conventions.
public struct S3Configuration: Sendable, Equatable {
    public var bucket: String
    public var scheme: String
    public var host: String
    public var port: Int?
    public var pathStyle: Bool
    public var region: String
    public var credentials: CredentialSource
    /// PEM file of CA certificates to trust for https endpoints (`WALE_S3_CA_BUNDLE` or
    /// `AWS_CA_BUNDLE`); nil trusts the system store. Verification is never turned off.
    public var caBundle: String?
    /// `x-amz-server-side-encryption` (WAL-E always sent AES256); nil sends none.
    public var serverSideEncryption: String?
    public var kmsKeyID: String?
    public var storageClass: String?
    /// The integrity checksum every upload carries, which the server checks against the body it
    /// received (`WALE_S3_CHECKSUM`).
    public var checksum: BodyChecksum = .crc32c
    /// Bytes per multipart part (S3's minimum, 5 MiB); objects up to this size go up in one PUT.
    public var partSize = 5 << 20
    public var partsInFlight = 4
    /// Bytes of upload data buffered at once across all uploads (`WALE_S3_UPLOAD_MEMORY_MIB`,
    /// default 16): bounds memory whatever the pool sizes. 16 MiB uploads as fast as 32 against
    /// a local server (bench/) and keeps a whole backup-push nearer the 64 MiB RSS goal.
    public var uploadMemory = 16 << 20
    /// Deadline of each request (`WALE_S3_REQUEST_TIMEOUT`, seconds; default 60): a server that
    /// accepts and never answers costs at most this per attempt.
    /// Deadlines and the minimum-progress rule of every request (see TransferLimits).
    public var limits = TransferLimits()
    public var requestTimeout: Double {
        get { limits.requestTimeout }
        set { limits.requestTimeout = newValue }
    }

    /// Bucket names S3 accepts in a host name (WAL-E's `from_store_name` rules).
    public static func isDNSCompatible(_ b: String) -> Bool {
        guard (3...63).contains(b.count), !b.contains("_"), !b.contains(".."), !b.contains("-."), !b.contains(".-") else { return false }
        guard let f = b.first, let l = b.last, f != "-", f != ".", l != "-", l != "." else { return false }
        guard b.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" || $0 == "." }) else { return false }
        return b.split(separator: ".").count != 4 || !b.split(separator: ".").allSatisfy { Int($0) != nil }
    }

    /// A region goes into the host name and into every signature's scope: letters, digits, `-`,
    /// `_` and `.` only (a space or newline would otherwise reach the HTTP layer, whose error then
    /// quotes the request's headers, signature included).
    static func checkRegion(_ region: String) throws(WALEError) {
        let ok = region.utf8.count <= 64 && region.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D || c == 0x5F || c == 0x2E
        }
        guard ok else {
            let shown = region.unicodeScalars.prefix(64).map { $0.isASCII && $0.value >= 0x20 && $0.value < 0x7F ? String($0) : "\\u{\(String($0.value, radix: 16))}" }.joined()
            throw WALEError(
                .user, "AWS_REGION \"\(shown)\" is not a region name", detail: "a region has only letters, digits, '-', '_' and '.'",
                hint: "set AWS_REGION (or the profile's region) to the bucket's region, e.g. us-east-1")
        }
    }

    /// Resolves the endpoint: `WALE_S3_ENDPOINT=<http|https>+<path|virtualhost|subdomain>://host[:port]`
    /// (WAL-E's form, which rejects a user, a path or a query), else `AWS_ENDPOINT_URL`, else AWS.
    public static func resolve(
        bucket: String, env: [String: String], accessKeyFlag: String?, instanceProfile: Bool = false
    ) throws(WALEError) -> S3Configuration {
        let profile = SharedAWSFiles.profile(env)
        let creds = try credentialSource(bucket: bucket, env: env, accessKeyFlag: accessKeyFlag, instanceProfile: instanceProfile)
        let region = env["AWS_REGION"].flatMap { $0.isEmpty ? nil : $0 } ?? env["AWS_DEFAULT_REGION"].flatMap { $0.isEmpty ? nil : $0 }
            ?? SharedAWSFiles.region(profile: profile.name, configFile: POSIX.readSmallFile(SharedAWSFiles.configPath(env)))
        if let region { try checkRegion(region) }
        var c: S3Configuration
        if let e = env["WALE_S3_ENDPOINT"], !e.isEmpty {
            guard let sep = e.firstRange(of: "://") else { throw badEndpoint(e) }
            let parts = e[..<sep.lowerBound].split(separator: "+").map(String.init)
            guard parts.count == 2, ["http", "https"].contains(parts[0]), ["path", "virtualhost", "subdomain"].contains(parts[1]) else {
                throw badEndpoint(e)
            }
            let rest = String(e[sep.upperBound...])
            guard !rest.contains("@"), !rest.contains("/"), !rest.contains("?"), !rest.isEmpty else { throw badEndpoint(e) }
            let (h, p) = try splitHostPort(rest, e)
            c = S3Configuration(
                bucket: bucket, scheme: parts[0], host: h, port: p, pathStyle: parts[1] == "path", region: region ?? "us-east-1",
                credentials: creds)
        } else if let u = env["AWS_ENDPOINT_URL_S3"] ?? env["AWS_ENDPOINT_URL"], !u.isEmpty {
            guard let sep = u.firstRange(of: "://"), ["http", "https"].contains(String(u[..<sep.lowerBound])) else {
                throw WALEError(.user, "AWS_ENDPOINT_URL \"\(u)\" is not an http(s) URL")
            }
            var rest = String(u[sep.upperBound...])
            while rest.hasSuffix("/") { rest.removeLast() }
            let (h, p) = try splitHostPort(rest, u)
            c = S3Configuration(
                bucket: bucket, scheme: String(u[..<sep.lowerBound]), host: h, port: p, pathStyle: true, region: region ?? "us-east-1",
                credentials: creds)
        } else {
            guard let region else {
                throw WALEError(.user, "must define one of AWS_REGION or WALE_S3_ENDPOINT", hint: "e.g. AWS_REGION=us-east-1")
            }
            let virtual = isDNSCompatible(bucket) && !bucket.contains(".")
            c = S3Configuration(
                bucket: bucket, scheme: "https", host: "s3.\(region).amazonaws.com", port: nil, pathStyle: !virtual, region: region,
                credentials: creds)
        }
        if !c.pathStyle && !isDNSCompatible(bucket) { c.pathStyle = true }
        let sse = env["WALE_S3_SSE"] ?? "AES256"
        c.serverSideEncryption = sse.isEmpty || sse.lowercased() == "none" ? nil : sse
        c.kmsKeyID = env["WALE_S3_SSE_KMS_KEY_ID"].flatMap { $0.isEmpty ? nil : $0 }
        if c.kmsKeyID != nil { c.serverSideEncryption = "aws:kms" }
        c.caBundle = [env["WALE_S3_CA_BUNDLE"], env["AWS_CA_BUNDLE"]].compactMap { $0 }.first { !$0.isEmpty }
        if let ca = c.caBundle, POSIX.readSmallFile(ca, limit: 16 << 20) == nil {
            throw WALEError(.user, "the CA bundle \(ca) cannot be read", hint: "WALE_S3_CA_BUNDLE / AWS_CA_BUNDLE must name a readable PEM file")
        }
        c.storageClass = env["WALE_S3_STORAGE_CLASS"].flatMap { $0.isEmpty ? nil : $0 }
        if let v = env["WALE_S3_CHECKSUM"], !v.isEmpty {
            guard let k = BodyChecksum(rawValue: v.lowercased()) else {
                throw WALEError(
                    .user, "WALE_S3_CHECKSUM=\(v) is not a checksum wal-e knows",
                    hint: "crc32c (the default: x-amz-checksum-crc32c) or md5 (Content-MD5, for stores without S3's flexible checksums)")
            }
            c.checksum = k
        }
        if let m = env["WALE_S3_UPLOAD_MEMORY_MIB"], !m.isEmpty {
            guard let v = Int(m), v >= 6 else {
                throw WALEError(.user, "WALE_S3_UPLOAD_MEMORY_MIB=\(m) is not a whole number of MiB of at least 6")
            }
            c.uploadMemory = v << 20
            c.partSize = min(8 << 20, max(5 << 20, (v << 20) / 4))
        }
        c.limits = try TransferLimits.resolve(env: env, timeoutVariable: "WALE_S3_REQUEST_TIMEOUT")
        return c
    }

    /// WAL-E's credential order: `--aws-instance-profile` (metadata service), else `-k` or
    /// `AWS_ACCESS_KEY_ID` with `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`/`AWS_SECURITY_TOKEN`),
    /// else the shared credentials file's profile (`AWS_PROFILE`, `AWS_SHARED_CREDENTIALS_FILE`).
    static func credentialSource(
        bucket: String, env: [String: String], accessKeyFlag: String?, instanceProfile: Bool
    ) throws(WALEError) -> CredentialSource {
        if instanceProfile {
            let e = env["AWS_EC2_METADATA_SERVICE_ENDPOINT"].flatMap { $0.isEmpty ? nil : $0 } ?? InstanceMetadataClient.defaultEndpoint
            guard e.hasPrefix("http://") || e.hasPrefix("https://") else {
                throw WALEError(.user, "AWS_EC2_METADATA_SERVICE_ENDPOINT \"\(e)\" is not an http(s) URL")
            }
            if ["true", "1"].contains(env["AWS_EC2_METADATA_DISABLED"]?.lowercased() ?? "") {
                throw WALEError(.user, "--aws-instance-profile needs the instance metadata service, but AWS_EC2_METADATA_DISABLED is set")
            }
            return .instanceProfile(endpoint: e)
        }
        let token = [env["AWS_SESSION_TOKEN"], env["AWS_SECURITY_TOKEN"]].compactMap { $0 }.first { !$0.isEmpty }
        let key = (accessKeyFlag ?? env["AWS_ACCESS_KEY_ID"]).flatMap { $0.isEmpty ? nil : $0 }
        let secret = env["AWS_SECRET_ACCESS_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        if let key, let secret {
            return .fixed(AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: token))
        }
        if key != nil {
            throw WALEError(.user, "AWS_SECRET_ACCESS_KEY is not set for s3://\(bucket)", hint: "the secret comes only from the environment (e.g. an envdir)")
        }
        let profile = SharedAWSFiles.profile(env)
        let file = SharedAWSFiles.credentialsPath(env)
        if let c = SharedAWSFiles.credentials(
            profile: profile.name, credentialsFile: POSIX.readSmallFile(file), configFile: POSIX.readSmallFile(SharedAWSFiles.configPath(env)))
        {
            return .fixed(c)
        }
        if profile.explicit {
            throw WALEError(
                .user, "the AWS profile \"\(profile.name)\" has no keys in \(file)",
                hint: "add aws_access_key_id and aws_secret_access_key to [\(profile.name)], or fix AWS_PROFILE")
        }
        throw WALEError(
            .user, "no AWS credentials for s3://\(bucket)",
            hint: "set AWS_ACCESS_KEY_ID (or -k) and AWS_SECRET_ACCESS_KEY in the environment (e.g. an envdir), "
                + "use --aws-instance-profile on EC2, or a profile in ~/.aws/credentials (AWS_PROFILE)")
    }

    static func badEndpoint(_ e: String) -> WALEError {
        WALEError(
            .user, "WALE_S3_ENDPOINT \"\(e)\" is not of the form <http|https>+<path|virtualhost>://host[:port]",
            hint: "e.g. WALE_S3_ENDPOINT=https+path://s3.example.com:9000 (no user, path or query)")
    }

    static func splitHostPort(_ s: String, _ whole: String) throws(WALEError) -> (String, Int?) {
        if let colon = s.lastIndex(of: ":"), !s.hasSuffix("]") {
            guard let p = Int(s[s.index(after: colon)...]), (1...65535).contains(p) else { throw badEndpoint(whole) }
            return (String(s[..<colon]), p)
        }
        return (s, nil)
    }

    /// The Host header value.
    var authority: String {
        let h = pathStyle ? host : "\(bucket).\(host)"
        return port.map { "\(h):\($0)" } ?? h
    }

    /// The encoded path for a key (path style puts the bucket first).
    func path(_ key: String) -> String {
        let k = percentEncode(key, keepSlash: true)
        return pathStyle ? "/\(bucket)/\(k)" : "/\(k)"
    }

    var bucketPath: String { pathStyle ? "/\(bucket)/" : "/" }
}

/// How an upload's body is protected: the server recomputes it and refuses a body that does not
/// match (BadDigest).
public enum BodyChecksum: String, Sendable {
    /// `x-amz-checksum-crc32c` (S3's flexible checksums, also SeaweedFS and MinIO): hardware CRC,
    /// about ten times cheaper than MD5; multipart uploads declare it when created and list each
    /// part's value when completed.
    case crc32c
    /// `Content-MD5`: understood by every S3-compatible store.
    case md5
}
