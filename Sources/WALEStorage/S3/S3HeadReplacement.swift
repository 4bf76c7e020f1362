import NIOCore
import WALECore

/// Key rewrap on S3 (`ObjectStore.replaceHead`): the new head and the object's next 5 MiB are sent
/// as the first part of a multipart upload, and the rest is copied by S3 itself from the old
/// object (UploadPartCopy with a source range). S3 wants every part but the last to be at least
/// 5 MiB, which is why the first part carries some body; an object too small for that is streamed.
extension S3Store {
    static let minimumPart = 5 << 20
    /// Parts S3 copies: up to 1 GiB each (S3 allows 5 GiB; smaller keeps a retry cheap).
    static let copyPart: Int64 = 1 << 30

    public func readHead(_ key: String, length: Int) async throws -> [UInt8] {
        let what = "GET \(key) (first \(length) bytes)"
        let r = try await send(.GET, key: key, headers: [("range", "bytes=0-\(max(length, 1) - 1)")], what: what)
        switch r.status {
        case 200, 206: return Array(r.body.prefix(length))
        case 416: return []  // an empty object
        case 404 where s3Code(r.body) != "NoSuchBucket": throw WALEError(.notFound, "object \(key) does not exist", detail: "s3://\(config.bucket)/\(key)")
        default: throw failure(r, what, key: key)
        }
    }

    public func replaceHead(of original: ObjectInfo, dropping: Int, with head: [UInt8]) async throws -> HeadReplacement {
        let key = original.key
        let firstEnd = Int64(dropping + Self.minimumPart)
        guard original.size >= firstEnd + Int64(Self.minimumPart) else {
            return try await streamingReplaceHead(of: original, dropping: dropping, with: head)
        }
        let what = "GET \(key) (bytes \(dropping) to \(firstEnd - 1))"
        let r = try await send(.GET, key: key, headers: [("range", "bytes=\(dropping)-\(firstEnd - 1)")], what: what)
        guard r.status == 206, r.body.count == Self.minimumPart else { throw failure(r, what, key: key) }
        var first = ByteBuffer(bytes: head)
        first.writeBytes(r.body)
        // The upload declares no checksum algorithm (copied parts could not carry ours): the sent
        // part goes with Content-MD5, which every S3 checks.
        let upload = try await startMultipart(key, options: WriteOptions(metadata: original.metadata), declaringChecksum: false)
        let uploadID = upload.uploadID
        do {
            var parts: [Multipart.Part] = []
            let put = try await send(
                .PUT, key: key, query: [("partNumber", "1"), ("uploadId", uploadID)], headers: [("content-md5", md5Base64(first))], body: first,
                what: "UploadPart 1 of \(key)")
            guard put.status == 200, let etag = put.headers.first(name: "etag") else { throw failure(put, "UploadPart 1 of \(key)", key: key) }
            parts.append(.init(etag: etag, crc32c: nil))
            var offset = firstEnd
            while offset < original.size {
                let end = min(original.size, offset + Self.copyPart)
                let n = parts.count + 1
                let what = "UploadPartCopy \(n) of \(key)"
                let copy = try await send(
                    .PUT, key: key, query: [("partNumber", String(n)), ("uploadId", uploadID)],
                    headers: [("x-amz-copy-source", "/\(config.bucket)/" + percentEncode(key, keepSlash: true)), ("x-amz-copy-source-range", "bytes=\(offset)-\(end - 1)")],
                    what: what)
                guard copy.status == 200, s3Code(copy.body) == nil, let etag = xmlValues(copy.body, "ETag").first else { throw failure(copy, what, key: key) }
                parts.append(.init(etag: etag, crc32c: nil))
                offset = end
            }
            _ = try await upload.commit(parts, metadata: [:])
        } catch {
            await upload.abort()
            throw error
        }
        return HeadReplacement(read: Int64(Self.minimumPart), sent: Int64(first.readableBytes), copiedInStore: original.size - firstEnd)
    }
}
