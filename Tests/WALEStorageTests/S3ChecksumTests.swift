import NIOCore
import Testing
import WALECore
@testable import WALEStorage

/// Every S3 upload carries a checksum the server verifies: CRC32C by default, Content-MD5 on request.
@Suite struct S3ChecksumTests {
    let base = ["WALE_S3_ENDPOINT": "http+path://127.0.0.1:9", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x"]

    @Test func headerValues() throws {
        // x-amz-checksum-crc32c: base64 of the big-endian CRC-32C (0xE3069283 for "123456789").
        #expect(try crc32cBase64(ByteBuffer(string: "123456789")) == "4waSgw==")
        #expect(try crc32cBase64(ByteBuffer()) == "AAAAAA==")
        // Content-MD5: base64 of the MD5 (RFC 1321's "abc").
        #expect(try md5Base64(ByteBuffer(string: "abc")) == "kAFQmDzST7DWlj99KOF/cg==")
    }

    @Test func setting() throws {
        #expect(try S3Configuration.resolve(bucket: "b", env: base, accessKeyFlag: nil).checksum == .crc32c)
        var e = base
        e["WALE_S3_CHECKSUM"] = "MD5"
        #expect(try S3Configuration.resolve(bucket: "b", env: e, accessKeyFlag: nil).checksum == .md5)
        e["WALE_S3_CHECKSUM"] = "sha1"
        #expect(throws: WALEError.self) { try S3Configuration.resolve(bucket: "b", env: e, accessKeyFlag: nil) }
    }
}
