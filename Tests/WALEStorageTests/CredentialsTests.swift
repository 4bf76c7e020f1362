import NIOCore
import Synchronization
import Testing
import WALECore
@testable import WALEStorage

/// Pure credential logic: the refresh schedule of temporary keys, WAL-E's source order, the
/// shared credentials/config files and the metadata service's role document.
@Suite struct CredentialsTests {
    let a = AWSCredentials(accessKeyID: "AKIAONE", secretAccessKey: "s1", sessionToken: "t1")
    let b = AWSCredentials(accessKeyID: "AKIATWO", secretAccessKey: "s2", sessionToken: "t2")

    final class Clock: Sendable {
        let t = Mutex<Double>(1000)
        func now() -> Double { t.withLock { $0 } }
        func set(_ v: Double) { t.withLock { $0 = v } }
    }

    @Test func refreshesOnlyWithinTheMarginBeforeExpiry() async throws {
        let clock = Clock()
        let calls = Mutex(0)
        let (a, b) = (self.a, self.b)
        let cache = CredentialCache(margin: 300, now: { clock.now() }) {
            let n = calls.withLock { v in v += 1; return v }
            // Each fetch hands out keys valid for one hour from "now".
            return ExpiringCredentials(credentials: n == 1 ? a : b, expiration: clock.now() + 3600)
        }
        #expect(try await cache.credentials() == a)
        clock.set(1000 + 3600 - 301)  // just outside the margin: still the cached keys
        #expect(try await cache.credentials() == a)
        #expect(calls.withLock { $0 } == 1)
        clock.set(1000 + 3600 - 299)  // inside the margin: fetched again before expiry
        #expect(try await cache.credentials() == b)
        #expect(calls.withLock { $0 } == 2)
        #expect(await cache.fetchCount == 2)
        await cache.invalidate()
        _ = try await cache.credentials()
        #expect(calls.withLock { $0 } == 3)
    }

    @Test func concurrentCallersShareOneFetch() async throws {
        let calls = Mutex(0)
        let a = self.a
        let cache = CredentialCache(margin: 300, now: { 0 }) {
            calls.withLock { $0 += 1 }
            try await Task.sleep(nanoseconds: 50_000_000)
            return ExpiringCredentials(credentials: a, expiration: nil)
        }
        try await withThrowingTaskGroup(of: AWSCredentials.self) { g in
            for _ in 0..<8 { g.addTask { try await cache.credentials() } }
            for try await c in g { #expect(c == a) }
        }
        #expect(calls.withLock { $0 } == 1)
    }

    @Test func aFailedRefreshKeepsKeysThatStillWork() async throws {
        let clock = Clock()
        let fail = Mutex(false)
        let a = self.a
        let cache = CredentialCache(margin: 300, now: { clock.now() }) {
            if fail.withLock({ $0 }) { throw WALEError(.io, "metadata service down") }
            return ExpiringCredentials(credentials: a, expiration: 2000)
        }
        _ = try await cache.credentials()
        fail.withLock { $0 = true }
        clock.set(1900)  // inside the margin, not yet expired: old keys
        #expect(try await cache.credentials() == a)
        clock.set(2001)  // expired: the failure surfaces
        await #expect(throws: WALEError.self) { try await cache.credentials() }
    }

    @Test func roleDocumentParsing() throws {
        let doc = """
            {"Code": "Success", "LastUpdated": "2026-11-21T10:00:00Z", "Type": "AWS-HMAC", "AccessKeyId": "ASIAEXAMPLE",
             "SecretAccessKey": "secret", "Token": "tok", "Expiration": "2026-11-21T16:00:00Z"}
            """
        let c = try InstanceMetadataClient.parse(doc, role: "r")
        #expect(c.credentials == AWSCredentials(accessKeyID: "ASIAEXAMPLE", secretAccessKey: "secret", sessionToken: "tok"))
        #expect(c.expiration == parseISO8601("2026-11-21T16:00:00Z"))
        #expect(throws: WALEError.self) { try InstanceMetadataClient.parse(#"{"Code": "AssumeRoleUnauthorizedAccess"}"#, role: "r") }
        #expect(throws: WALEError.self) { try InstanceMetadataClient.parse("<html>", role: "r") }
        #expect(throws: WALEError.self) { try InstanceMetadataClient.parse(#"{"Code": "Success", "AccessKeyId": "A"}"#, role: "r") }
    }

    @Test func sharedFiles() {
        let creds = """
            # comment
            [default]
            aws_access_key_id = AKIADEFAULT
            aws_secret_access_key=secretdefault

            [archiver]
            aws_access_key_id = AKIAARCH
            aws_secret_access_key = secret arch
            aws_session_token = tok
            ; another comment
            [incomplete]
            aws_access_key_id = AKIAHALF
            """
        let config = """
            [default]
            region = eu-west-1
            [profile archiver]
            region = us-west-2
            [profile cfgonly]
            aws_access_key_id = AKIACFG
            aws_secret_access_key = cfgsecret
            """
        #expect(SharedAWSFiles.credentials(profile: "default", credentialsFile: creds, configFile: nil)
            == AWSCredentials(accessKeyID: "AKIADEFAULT", secretAccessKey: "secretdefault"))
        #expect(SharedAWSFiles.credentials(profile: "archiver", credentialsFile: creds, configFile: config)
            == AWSCredentials(accessKeyID: "AKIAARCH", secretAccessKey: "secret arch", sessionToken: "tok"))
        #expect(SharedAWSFiles.credentials(profile: "incomplete", credentialsFile: creds, configFile: nil) == nil)
        #expect(SharedAWSFiles.credentials(profile: "cfgonly", credentialsFile: creds, configFile: config)?.accessKeyID == "AKIACFG")
        #expect(SharedAWSFiles.region(profile: "archiver", configFile: config) == "us-west-2")
        #expect(SharedAWSFiles.region(profile: "default", configFile: config) == "eu-west-1")
        #expect(SharedAWSFiles.profile(["AWS_PROFILE": "x", "AWS_DEFAULT_PROFILE": "y"]) == ("x", true))
        #expect(SharedAWSFiles.profile([:]) == ("default", false))
        #expect(SharedAWSFiles.credentialsPath(["HOME": "/home/pg"]) == "/home/pg/.aws/credentials")
        #expect(SharedAWSFiles.credentialsPath(["HOME": "/h", "AWS_SHARED_CREDENTIALS_FILE": "/etc/c"]) == "/etc/c")
    }

    @Test func sourceOrder() throws {
        let env = ["WALE_S3_ENDPOINT": "http+path://127.0.0.1:1", "AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "s",
                   "AWS_SECURITY_TOKEN": "wale-token", "HOME": "/nonexistent"]
        #expect(try S3Configuration.resolve(bucket: "b", env: env, accessKeyFlag: nil).credentials
            == .fixed(AWSCredentials(accessKeyID: "AKIAENV", secretAccessKey: "s", sessionToken: "wale-token")))
        #expect(try S3Configuration.resolve(bucket: "b", env: env, accessKeyFlag: "AKIAFLAG").credentials
            == .fixed(AWSCredentials(accessKeyID: "AKIAFLAG", secretAccessKey: "s", sessionToken: "wale-token")))
        #expect(try S3Configuration.resolve(bucket: "b", env: env, accessKeyFlag: nil, instanceProfile: true).credentials
            == .instanceProfile(endpoint: InstanceMetadataClient.defaultEndpoint))
        var moved = env
        moved["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = "http://127.0.0.1:8111"
        #expect(try S3Configuration.resolve(bucket: "b", env: moved, accessKeyFlag: nil, instanceProfile: true).credentials
            == .instanceProfile(endpoint: "http://127.0.0.1:8111"))
        moved["AWS_EC2_METADATA_DISABLED"] = "true"
        #expect(throws: WALEError.self) { try S3Configuration.resolve(bucket: "b", env: moved, accessKeyFlag: nil, instanceProfile: true) }
        var keyOnly = env
        keyOnly["AWS_SECRET_ACCESS_KEY"] = nil
        #expect(throws: WALEError.self) { try S3Configuration.resolve(bucket: "b", env: keyOnly, accessKeyFlag: nil) }
        var explicitMissing = keyOnly
        explicitMissing["AWS_ACCESS_KEY_ID"] = nil
        explicitMissing["AWS_PROFILE"] = "ghost"
        do {
            _ = try S3Configuration.resolve(bucket: "b", env: explicitMissing, accessKeyFlag: nil)
            Issue.record("a missing profile must be an error")
        } catch {
            #expect(error.message.contains("\"ghost\" has no keys"))
        }
    }

    @Test func instanceProfileSetting() throws {
        let env = ["WALE_S3_PREFIX": "s3://b/p"]
        #expect(try Configuration.resolve(GlobalFlags(), env: env).awsInstanceProfile == false)
        #expect(try Configuration.resolve(GlobalFlags(), env: env.merging(["AWS_INSTANCE_PROFILE": "1"]) { $1 }).awsInstanceProfile)
        #expect(try Configuration.resolve(GlobalFlags(), env: env.merging(["AWS_INSTANCE_PROFILE": "TRUE"]) { $1 }).awsInstanceProfile)
        #expect(try Configuration.resolve(GlobalFlags(), env: env.merging(["AWS_INSTANCE_PROFILE": ""]) { $1 }).awsInstanceProfile == false)
        #expect(throws: WALEError.self) { try Configuration.resolve(GlobalFlags(), env: env.merging(["AWS_INSTANCE_PROFILE": "yes"]) { $1 }) }
        var both = GlobalFlags()
        both.awsAccessKeyID = "AKIA"
        both.awsInstanceProfile = true
        #expect(throws: WALEError.self) { try Configuration.resolve(both, env: env) }
    }
}
