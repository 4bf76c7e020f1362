import Testing
import WALECore
@testable import WALEStorage

/// wabs:// settings from WAL-E's variables, and the small encoders the Shared Key scheme needs.
@Suite struct WABSConfigurationTests {
    let key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

    @Test func publicCloudByDefaultEmulatorByEndpoint() throws {
        let c = try WABSConfiguration.resolve(container: "pg", env: ["WABS_ACCOUNT_NAME": "acct", "WABS_ACCESS_KEY": key], accountFlag: nil)
        #expect(c.scheme == "https" && c.authority == "acct.blob.core.windows.net" && c.basePath == "")
        #expect(c.path("a b/wal_005/X.lzo") == "/pg/a%20b/wal_005/X.lzo")
        guard case .sharedKey(let k) = c.credential else { Issue.record("not a shared key"); return }
        #expect(k.count == 64)
        let e = try WABSConfiguration.resolve(
            container: "pg", env: ["WABS_SAS_TOKEN": "?sv=2021&sig=abc", "WABS_ENDPOINT": "http://127.0.0.1:10000/devstoreaccount1/"],
            accountFlag: "devstoreaccount1")
        #expect(e.authority == "127.0.0.1:10000" && e.basePath == "/devstoreaccount1" && e.path(nil) == "/devstoreaccount1/pg")
        guard case .sas(let t) = e.credential else { Issue.record("not a SAS"); return }
        #expect(t == "sv=2021&sig=abc")
    }

    @Test func missingOrBadSettingsAreNamed() {
        func message(_ env: [String: String]) -> String {
            do {
                _ = try WABSConfiguration.resolve(container: "pg", env: env, accountFlag: nil)
                return "accepted"
            } catch let e as WALEError {
                #expect(e.kind == .user)
                return e.message
            } catch { return "\(error)" }
        }
        #expect(message(["WABS_ACCESS_KEY": key]).contains("no Azure storage account"))
        #expect(message(["WABS_ACCOUNT_NAME": "a"]).contains("no Azure credentials for account a"))
        #expect(message(["WABS_ACCOUNT_NAME": "a", "WABS_ACCESS_KEY": "not base64!"]).contains("WABS_ACCESS_KEY is not a base64"))
        #expect(message(["WABS_ACCOUNT_NAME": "a", "WABS_ACCESS_KEY": key, "WABS_ENDPOINT": "ftp://x"]).contains("WABS_ENDPOINT"))
    }

    @Test func base64AndDates() {
        #expect(base64Decode("aGVsbG8=") == Array("hello".utf8))
        #expect(base64Decode("aGVsbG8") == Array("hello".utf8))
        #expect(base64Decode("a*") == nil)
        #expect(base64(base64Decode(key)!) == key)
        #expect(httpDate(0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(httpDate(1_795_966_200.7) == "Sun, 29 Nov 2026 15:30:00 GMT")
    }

    /// The string Shared Key signs: standard headers in their fixed order (Content-Length empty
    /// when 0), x-ms- headers sorted, then the account, the path and the sorted query.
    @Test func stringToSignLayout() {
        let s = WABSStore.stringToSign(
            method: "PUT", path: "/c/b", query: [("comp", "block"), ("blockid", "QQ==")],
            headers: [("x-ms-version", "2021-08-06"), ("x-ms-date", "D"), ("content-length", "0"), ("If-None-Match", "*"), ("content-md5", "M")],
            account: "acct")
        #expect(s == "PUT\n\n\n\nM\n\n\n\n\n*\n\n\nx-ms-date:D\nx-ms-version:2021-08-06\n/acct/c/b\nblockid:QQ==\ncomp:block")
    }
}
