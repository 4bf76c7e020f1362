// swift-tools-version:6.0
import PackageDescription

let swift6: [SwiftSetting] = [.swiftLanguageMode(.v6)]

let package = Package(
    name: "wal-e",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "wal-e", targets: ["wal-e"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // System libraries from Debian's -dev packages (liblzo2-dev, libzstd-dev, liblz4-dev, libxxhash-dev).
        .systemLibrary(name: "CLZO", path: "Sources/CLZO", providers: [.apt(["liblzo2-dev"])]),
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CLZ4", path: "Sources/CLZ4", providers: [.apt(["liblz4-dev"])]),
        // XXH3-128 (libxxhash-dev): wal-push's digest of a segment's raw content.
        .systemLibrary(name: "CXXHash", path: "Sources/CXXHash", providers: [.apt(["libxxhash-dev"])]),

        // Linux calls the Glibc module does not import (syncfs), malloc tuning, SIMD Adler-32.
        .target(name: "CWALESupport"),
        // Pure values: names, LSNs, layout, exit codes. No I/O.
        .target(name: "WALECore", swiftSettings: swift6),
        // The byte pipeline: lzop/LZO1X, zstd, lz4, digests.
        .target(
            name: "WALECodec",
            dependencies: [
                "WALECore", "CLZO", "CZstd", "CLZ4", "CXXHash", "CWALESupport",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swift6),
        // ObjectStore protocol and backends.
        .target(
            name: "WALEStorage",
            dependencies: [
                "WALECore", "WALECodec", "CWALESupport", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swift6),
        // PostgreSQL: one held session (libpq environment, .pgpass), backup start/stop, pg_control.
        .target(
            name: "WALEPostgres",
            dependencies: [
                "WALECore", "WALEStorage",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swift6),
        // Use cases: wal-push, wal-fetch (+ prefetch), backup-push, backup-fetch, backup-list.
        .target(
            name: "WALEEngine",
            dependencies: [
                "WALECore", "WALECodec", "WALEStorage", "WALEPostgres", "CWALESupport",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swift6),
        // The executable: CLI, configuration, logging bootstrap, exit codes.
        .executableTarget(
            name: "wal-e",
            dependencies: [
                "WALECore", "WALECodec", "WALEStorage", "WALEEngine", "WALEPostgres", "CWALESupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swift6,
            // PostgreSQL starts wal-e once per WAL segment, so start-up time is archiving time.
            // A position-dependent executable needs none of the 127,000 relative relocations a
            // PIE of this size applies (and dirties pages for) at every start, and without
            // --export-dynamic its dynamic symbol table shrinks from 41,000 entries to a few
            // hundred that the dynamic linker and the runtime's dladdr() no longer scan:
            // `wal-e version` 7.2 -> 5.1 ms (docs/design.md, "Start-up").
            linkerSettings: [.unsafeFlags(["-Xclang-linker", "-no-pie", "-Xlinker", "--no-export-dynamic"])]),

        .testTarget(name: "WALECoreTests", dependencies: ["WALECore"], swiftSettings: swift6),
        .testTarget(name: "WALECodecTests", dependencies: ["WALECodec", "CLZO", "CWALESupport"], swiftSettings: swift6),
        .testTarget(name: "WALEPostgresTests", dependencies: ["WALEPostgres"], swiftSettings: swift6),
        .testTarget(name: "WALEEngineTests", dependencies: ["WALEEngine", "WALEStorage", "WALECore"], swiftSettings: swift6),
        .testTarget(
            name: "WALEStorageTests",
            dependencies: [
                "WALEStorage", "WALEEngine", "WALECodec", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ],
            swiftSettings: swift6),
    ]
)
