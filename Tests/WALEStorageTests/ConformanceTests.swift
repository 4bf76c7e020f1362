#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import Testing
import WALECore
@testable import WALEStorage

/// The registry of stores every conformance test runs against: one row per store, each with the
/// variable that says scripts/test.sh started its server on 127.0.0.1 and how to open it. The
/// file store always runs.
enum Backends {
    static func env(_ k: String) -> String? { getenv(k).map { String(cString: $0) } }

    struct Row: Sendable {
        let name: String
        /// The variable scripts/test.sh exports when the server runs (nil: always available).
        let requires: String?
        let make: @Sendable () async throws -> any ObjectStore
    }

    static let registry: [Row] = [
        Row(name: "file", requires: nil) {
            let root = scratchDirectory()
            return FileStore(root: root, pruneStop: root)
        },
        // s3: CRC32C checksums (the default); s3-md5: Content-MD5 (WALE_S3_CHECKSUM=md5).
        Row(name: "s3", requires: "WALE_TEST_S3_ENDPOINT") { try s3(checksum: nil) },
        Row(name: "s3-md5", requires: "WALE_TEST_S3_ENDPOINT") { try s3(checksum: "md5") },
        Row(name: "wabs", requires: "WALE_TEST_WABS_ENDPOINT") {
            let e = [
                "WABS_ENDPOINT": env("WALE_TEST_WABS_ENDPOINT")!, "WABS_ACCOUNT_NAME": env("WALE_TEST_WABS_ACCOUNT")!,
                "WABS_ACCESS_KEY": env("WALE_TEST_WABS_KEY")!,
            ]
            var c = try WABSConfiguration.resolve(container: "conformance", env: e, accountFlag: nil)
            c.blockSize = 1 << 20  // several blocks with small objects
            c.listPageSize = 100  // several List Blobs pages
            let store = try WABSStore(config: c, logger: .discard, retry: RetryPolicy(attempts: 3))
            let made = try await store.send(.PUT, key: nil, query: [("restype", "container")], body: ByteBuffer(), what: "create container")
            #expect(made.status == 201 || made.code == "ContainerAlreadyExists")
            return store
        },
        Row(name: "swift", requires: "WALE_TEST_SWIFT_AUTHURL") {
            let e = [
                "SWIFT_AUTHURL": env("WALE_TEST_SWIFT_AUTHURL")!, "SWIFT_USER": env("WALE_TEST_SWIFT_USER")!,
                "SWIFT_PASSWORD": env("WALE_TEST_SWIFT_PASSWORD")!, "SWIFT_AUTH_VERSION": "1",
            ]
            var c = try SwiftConfiguration.resolve(container: "conformance", env: e)
            c.partSize = 1 << 20  // Static Large Objects with small objects
            c.listPageSize = 100  // several listing pages
            let store = try SwiftStore(config: c, logger: .discard, retry: RetryPolicy(attempts: 3))
            let made = try await store.send(.PUT, name: nil, body: ByteBuffer(), what: "create container")
            #expect(made.status == 201 || made.status == 202)
            return store
        },
        // gcs: anonymous, straight to fake-gcs-server; gcs-oauth: a service account's tokens,
        // through the proxy that refuses requests without a token it issued.
        Row(name: "gcs", requires: "WALE_TEST_GCS_EMULATOR") { try gcs(["STORAGE_EMULATOR_HOST": env("WALE_TEST_GCS_EMULATOR")!]) },
        Row(name: "gcs-oauth", requires: "WALE_TEST_GCS_ENDPOINT") {
            try gcs(["WALE_GS_ENDPOINT": env("WALE_TEST_GCS_ENDPOINT")!, "GOOGLE_APPLICATION_CREDENTIALS": env("WALE_TEST_GCS_SERVICE_ACCOUNT")!])
        },
    ]

    static func gcs(_ e: [String: String]) throws -> any ObjectStore {
        var c = try GCSConfiguration.resolve(bucket: "conformance", env: e)
        c.partSize = 1 << 20  // resumable uploads with small objects
        c.listPageSize = 100  // several listing pages
        return try GCSStore(config: c, logger: .discard, retry: RetryPolicy(attempts: 3))
    }

    static func s3(checksum: String?) throws -> any ObjectStore {
        var e = [
            "WALE_S3_ENDPOINT": env("WALE_TEST_S3_ENDPOINT")!, "AWS_ACCESS_KEY_ID": env("WALE_TEST_S3_ACCESS_KEY")!,
            "AWS_SECRET_ACCESS_KEY": env("WALE_TEST_S3_SECRET_KEY")!,
        ]
        if let checksum { e["WALE_S3_CHECKSUM"] = checksum }
        var c = try S3Configuration.resolve(bucket: "conformance", env: e, accessKeyFlag: nil)
        #expect(c.checksum == (checksum == "md5" ? .md5 : .crc32c))
        c.partSize = 5 << 20  // S3's smallest part: exercise multipart with small objects
        return try S3Store(config: c, logger: .discard, retry: .init(attempts: 3))
    }

    /// The names of the stores whose servers run.
    static var all: [String] { registry.filter { $0.requires.map { env($0) != nil } ?? true }.map(\.name) }

    /// A store plus a fresh key prefix for one test.
    static func make(_ kind: String) async throws -> (any ObjectStore, String) {
        let run = "run-\(getpid())-\(UInt32.random(in: 0...UInt32.max))/"
        return (try await registry.first { $0.name == kind }!.make(), run)
    }
}

func pattern(_ n: Int, seed: UInt8 = 7) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) } }

@Suite struct ObjectStoreConformance {
    @Test(arguments: Backends.all)
    func putGetHeadListDelete(kind: String) async throws {
        let (store, p) = try await Backends.make(kind)
        #expect(try await store.info(p + "a/missing") == nil)
        await #expect(throws: WALEError.self) { try await store.read(p + "a/missing") { try await $0.collect() } }
        #expect(try await store.write(p + "a/one", from: BytesSource(pattern(1000)), options: WriteOptions()) == .created)
        #expect(try await store.write(p + "a/two", from: BytesSource([]), options: WriteOptions()) == .created)
        #expect(try await store.write(p + "b/three", from: BytesSource([1]), options: WriteOptions()) == .created)
        #expect(try await store.info(p + "a/one")?.size == 1000)
        #expect(try await store.info(p + "a/two")?.size == 0)
        #expect(try await store.read(p + "a/one") { try await $0.collect() } == pattern(1000))
        #expect(try await store.read(p + "a/two") { try await $0.collect() } == [])
        #expect(Set(try await store.list(prefix: p + "a/").map(\.key)) == [p + "a/one", p + "a/two"])
        #expect(try await store.list(prefix: p + "a/o").map(\.key) == [p + "a/one"])
        #expect(try await store.list(prefix: p).count == 3)
        let listed = try await store.list(prefix: p + "a/")
        #expect(listed.allSatisfy { $0.lastModified > 1_700_000_000 })
        try await store.delete([p + "a/one", p + "a/never-existed"])
        #expect(try await store.info(p + "a/one") == nil)
        try await store.delete([p + "a/one"])  // missing keys are not an error
        try await store.delete([p + "a/two", p + "b/three"])
        #expect(try await store.list(prefix: p).isEmpty)
    }

    /// Sizes around a part boundary: exactly N parts (the part session alone says where the
    /// object ends), one byte more, one byte less.
    @Test(arguments: Backends.all)
    func partBoundaries(kind: String) async throws {
        let (store, p) = try await Backends.make(kind)
        for (i, size) in [(3 << 20), (3 << 20) + 1, (3 << 20) - 1, (6 << 20) + 12345].enumerated() {
            let bytes = pattern(size, seed: UInt8(i + 5))
            #expect(try await store.write(p + "edge\(i)", from: BytesSource(bytes, chunkSize: 1 << 20), options: WriteOptions(ifAbsent: true)) == .created)
            #expect(try await store.read(p + "edge\(i)") { try await $0.collect() } == bytes, "size \(size)")
            #expect(try await store.write(p + "edge\(i)", from: BytesSource(pattern(size)), options: WriteOptions(ifAbsent: true)) == .alreadyExists)
        }
    }

    /// Key rewrap's two operations: the first bytes of an object, and its head replaced with the
    /// rest and the metadata kept; small objects and one large enough for S3 to copy its body.
    @Test(arguments: Backends.all)
    func readHeadAndReplaceHead(kind: String) async throws {
        let (store, p) = try await Backends.make(kind)
        for (i, size) in [0, 100, (12 << 20) + 4321].enumerated() {
            let bytes = pattern(size, seed: UInt8(i + 40))
            var options = WriteOptions()
            options.metadata = ["wale-content-size": "\(size)"]
            #expect(try await store.write(p + "h\(i)", from: BytesSource(bytes, chunkSize: 1 << 20), options: options) == .created)
            #expect(try await store.readHead(p + "h\(i)", length: 11) == Array(bytes.prefix(11)))
            let drop = min(size, 40)
            let head = pattern(64, seed: 99)
            guard let info = try await store.info(p + "h\(i)") else { Issue.record("\(kind) h\(i) missing"); continue }
            let moved = try await store.replaceHead(of: info, dropping: drop, with: head)
            let got = try await store.read(p + "h\(i)") { try await $0.collect() }
            #expect(got == head + bytes[drop...], "\(kind) size \(size)")
            #expect(moved.sent + moved.copiedInStore == Int64(head.count + size - drop), "\(kind) size \(size): \(moved)")
            if store.storesLateMetadata { #expect(try await store.info(p + "h\(i)")?.metadata["wale-content-size"] == "\(size)", "\(kind)") }
            if kind.hasPrefix("s3") && size > (10 << 20) { #expect(moved.sent < (6 << 20) && moved.copiedInStore > (6 << 20), "\(moved)") }
        }
        await #expect(throws: WALEError.self) { _ = try await store.readHead(p + "missing", length: 11) }
    }

    @Test(arguments: Backends.all)
    func largeObjectsStream(kind: String) async throws {
        let (store, p) = try await Backends.make(kind)
        let big = pattern(23 << 20, seed: 3)  // several parts on S3 (5 MiB parts), odd final part
        #expect(try await store.write(p + "big", from: BytesSource(big, chunkSize: 1 << 20), options: WriteOptions()) == .created)
        #expect(try await store.info(p + "big")?.size == Int64(big.count))
        var got: [UInt8] = []
        var chunks = 0
        try await store.read(p + "big") { src in
            while let c = try await src.next() {
                got += c
                chunks += 1
            }
        }
        #expect(got == big)
        #expect(chunks > 1)  // streamed, not one buffer
        try await store.delete([p + "big"])
    }

    @Test(arguments: Backends.all)
    func oddKeys(kind: String) async throws {
        let (store, p) = try await Backends.make(kind)
        let keys = ["sp ace", "plus+sign", "eq=amp&q?", "ünïcödé", "a%2Fb", "tilde~dot.", "semi;colon,comma"].map { p + "odd/" + $0 }
        for (i, k) in keys.enumerated() {
            #expect(try await store.write(k, from: BytesSource([UInt8(i)]), options: WriteOptions()) == .created, "\(k)")
        }
        #expect(Set(try await store.list(prefix: p + "odd/").map(\.key)) == Set(keys))
        for (i, k) in keys.enumerated() {
            #expect(try await store.read(k) { try await $0.collect() } == [UInt8(i)], "\(k)")
        }
        try await store.delete(keys)
        #expect(try await store.list(prefix: p + "odd/").isEmpty)
    }

    @Test(arguments: Backends.all)
    func ifAbsentAndConcurrentWriters(kind: String) async throws {
        let (store, p) = try await Backends.make(kind)
        #expect(try await store.write(p + "w", from: BytesSource([1, 2, 3]), options: WriteOptions(ifAbsent: true)) == .created)
        #expect(try await store.write(p + "w", from: BytesSource([9]), options: WriteOptions(ifAbsent: true)) == .alreadyExists)
        #expect(try await store.read(p + "w") { try await $0.collect() } == [1, 2, 3])
        // Concurrent writers of one key: whatever wins, the object is one writer's whole content.
        let payloads = (0..<6).map { pattern(200_000, seed: UInt8($0)) }
        try await withThrowingTaskGroup(of: Void.self) { g in
            for pl in payloads { g.addTask { _ = try await store.write(p + "c", from: BytesSource(pl, chunkSize: 65536), options: WriteOptions()) } }
            try await g.waitForAll()
        }
        let final = try await store.read(p + "c") { try await $0.collect() }
        #expect(payloads.contains(final))
        try await store.delete([p + "w", p + "c"])
    }

    @Test(arguments: Backends.all)
    func listingPages(kind: String) async throws {
        let (store, p) = try await Backends.make(kind)
        let n = 1010  // more than one ListObjectsV2 page (1000)
        try await withThrowingTaskGroup(of: Void.self) { g in
            var i = 0
            for _ in 0..<8 {
                let start = i
                g.addTask {
                    var j = start
                    while j < n {
                        _ = try await store.write(p + "page/k\(j)", from: BytesSource([UInt8(j & 255)]), options: WriteOptions())
                        j += 8
                    }
                }
                i += 1
            }
            try await g.waitForAll()
        }
        let listed = try await store.list(prefix: p + "page/")
        #expect(listed.count == n)
        #expect(Set(listed.map(\.key)).count == n)
        try await store.delete(listed.map(\.key))  // more than one DeleteObjects batch on S3? (1000 per batch)
        #expect(try await store.list(prefix: p + "page/").isEmpty)
    }
}

/// Metadata given before and after the body (the raw segment's digest, known only at the end of
/// the stream) comes back from `info`, for a one-request object and for one sent in parts/blocks.
@Suite struct ObjectStoreMetadata {
    @Test(arguments: Backends.all)
    func earlyAndLateMetadataRoundTrip(kind: String) async throws {
        let (store, p) = try await Backends.make(kind)
        guard store.storesLateMetadata else { return }  // the file store keeps none
        for (name, size) in [("small", 1000), ("blocks", 3 << 20)] {
            var o = WriteOptions(ifAbsent: true)
            o.metadata = ["wale-early": "e-\(name)"]
            o.lateMetadata = LateMetadata { ["wale-content-sha256": "late-\(name)"] }
            #expect(try await store.write(p + name, from: BytesSource(pattern(size)), options: o) == .created)
            let info = try #require(try await store.info(p + name))
            #expect(info.size == Int64(size))
            #expect(info.metadata["wale-early"] == "e-\(name)")
            #expect(info.metadata["wale-content-sha256"] == "late-\(name)")
            // A read carries the same metadata (wal-fetch checks the digest without a HEAD).
            let carried = try await store.read(p + name) { src in (src as? any ObjectMetadataSource)?.metadata }
            #expect(carried?["wale-early"] == "e-\(name)")
            #expect(carried?["wale-content-sha256"] == "late-\(name)")
        }
        try await store.delete([p + "small", p + "blocks"])
    }
}
