import Crypto
import Testing
import WALECodec
@testable import WALEStorage

/// AWS's published SigV4 test suite (service "service", us-east-1, 2015-08-30T12:36:00Z) and
/// the S3 documentation's GetObject example: canonical request, string to sign and signature
/// are each checked.
@Suite struct SigV4Tests {
    let suite = SigV4Signer(region: "us-east-1", service: "service")
    let creds = AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    let date = "20150830T123600Z"
    let hostAndDate = [("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z")]

    @Test func getVanilla() {
        let (creq, signed) = SigV4Signer.canonicalRequest(
            method: "GET", path: "/", query: [], headers: hostAndDate, payloadHash: SigV4Signer.emptyPayloadHash)
        #expect(creq == "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" + SigV4Signer.emptyPayloadHash)
        #expect(signed == "host;x-amz-date")
        let sts = suite.stringToSign(canonicalRequest: creq, amzDate: date)
        #expect(sts == "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63")
        #expect(suite.signature(stringToSign: sts, secret: creds.secretAccessKey, amzDate: date) == "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
        #expect(
            suite.authorization(method: "GET", path: "/", query: [], headers: hostAndDate, payloadHash: SigV4Signer.emptyPayloadHash, amzDate: date, credentials: creds)
                == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
    }

    @Test func queryOrderAndPost() {
        let q = suite.authorization(
            method: "GET", path: "/", query: [("Param2", "value2"), ("Param1", "value1")], headers: hostAndDate,
            payloadHash: SigV4Signer.emptyPayloadHash, amzDate: date, credentials: creds)
        #expect(q.hasSuffix("Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"))
        let post = suite.authorization(
            method: "POST", path: "/", query: [], headers: hostAndDate, payloadHash: SigV4Signer.emptyPayloadHash, amzDate: date, credentials: creds)
        #expect(post.hasSuffix("Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"))
    }

    @Test func s3DocumentationGetObject() {
        let s3 = SigV4Signer(region: "us-east-1", service: "s3")
        let headers = [
            ("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9"), ("x-amz-content-sha256", SigV4Signer.emptyPayloadHash),
            ("x-amz-date", "20130524T000000Z"),
        ]
        let (creq, _) = SigV4Signer.canonicalRequest(method: "GET", path: "/test.txt", query: [], headers: headers, payloadHash: SigV4Signer.emptyPayloadHash)
        let sts = s3.stringToSign(canonicalRequest: creq, amzDate: "20130524T000000Z")
        #expect(sts.hasSuffix("\n7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"))
        #expect(
            s3.signature(stringToSign: sts, secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", amzDate: "20130524T000000Z")
                == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    @Test func encodingAndDates() {
        #expect(SigV4Signer.uriEncode("a b/c~d=é", keepSlash: true) == "a%20b/c~d%3D%C3%A9")
        #expect(SigV4Signer.uriEncode("a/b", keepSlash: false) == "a%2Fb")
        #expect(SigV4Signer.amzDate(1_440_938_160) == "20150830T123600Z")
        #expect(SigV4Signer.collapseSpaces("  a   b  c ") == "a b c")
    }
}
