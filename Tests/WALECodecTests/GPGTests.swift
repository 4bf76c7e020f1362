#if canImport(Glibc)
import Glibc
#endif
import Testing
import WALECore
@testable import WALECodec

/// The gpg stage's plumbing, with gpg modes that need no key: `--store` wraps data in an OpenPGP
/// literal packet, `-d` unwraps it. Keys and WAL-E interop are covered by tests/integration/test_gpg.py.
@Suite struct GPGTests {
    /// An empty home of the tests' own: two gpg processes started at once on a host without
    /// ~/.gnupg race to create it, and the loser fails ("can't create directory: File exists").
    static let home: String = {
        var template = Array("/tmp/wale-gpg-test-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { return "/tmp" }
        return String(cString: template)
    }()

    static func pattern(_ n: Int) -> [UInt8] {
        var x: UInt32 = 0x9E37_79B9
        return (0..<n).map { _ in
            x ^= x << 13; x ^= x >> 17; x ^= x << 5
            return UInt8(truncatingIfNeeded: x)
        }
    }

    static func run(_ t: any ByteTransform, _ input: [UInt8], chunk: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < input.count {
            try t.push(Array(input[i..<min(input.count, i + chunk)]))
            i += chunk
            while case let o = try t.pull(limit: 1 << 20), !o.isEmpty { out += o }
        }
        try t.finish()
        while case let o = try t.pull(limit: 1 << 20), !o.isEmpty { out += o }
        return out
    }

    /// Megabyte chunks, far over a pipe's 64 KiB, through two gpg processes in a chain: nothing
    /// deadlocks on a full pipe and every byte comes back in order.
    @Test func largeChunksRoundTripThroughAChain() throws {
        let data = Self.pattern(5 * (1 << 20) + 12_345)
        let store = try GPGProcess(arguments: ["--homedir", Self.home, "--batch", "--store", "-z", "0"], what: "gpg store", hint: "")
        let unwrap = try GPGProcess(arguments: ["--homedir", Self.home, "-d", "-q", "--batch"], what: "gpg unwrap", hint: "")
        let out = try Self.run(ChainedTransform(store, unwrap), data, chunk: 1 << 20)
        #expect(out.count == data.count)
        #expect(out == data)
    }

    /// Compressor then gpg on the way in, gpg then decompressor on the way out (the order
    /// wal-push and wal-fetch use), with small and odd chunks.
    @Test func chainsWithACodecOnBothSides() throws {
        let data = Self.pattern(700_000)
        let sealed = ChainedTransform(
            LzopEncoder(mode: 0o600, mtime: 0), try GPGProcess(arguments: ["--homedir", Self.home, "--batch", "--store", "-z", "0"], what: "gpg store", hint: ""))
        let stored = try Self.run(sealed, data, chunk: 100_003)
        #expect(!stored.starts(with: Lzop.magic))
        let opened = ChainedTransform(try GPGProcess(arguments: ["--homedir", Self.home, "-d", "-q", "--batch"], what: "gpg unwrap", hint: ""), LzopDecoder())
        #expect(try Self.run(opened, stored, chunk: 4093) == data)
    }

    /// gpg failing (here: input that is not OpenPGP) is an error with its status and words, never
    /// a short, successful stream.
    @Test func aFailingGPGIsAnError() throws {
        let t = try GPGProcess(arguments: ["--homedir", Self.home, "-d", "-q", "--batch"], what: "gpg decryption of obj", hint: "the hint")
        do {
            _ = try Self.run(t, Array("this is not OpenPGP data at all".utf8), chunk: 1000)
            Issue.record("gpg's failure was not reported")
        } catch let e as WALEError {
            #expect(e.kind == .user)
            #expect(e.message.hasPrefix("gpg decryption of obj failed (gpg exited 2)"))
            #expect(e.detail?.contains("gpg:") == true)
            #expect(e.hint == "the hint")
        }
    }

    /// gpg gone before it read its input (here: a bad option): the writer gets EPIPE, never a
    /// SIGPIPE that would kill wal-e (a restore_command killed by a signal stops PostgreSQL's
    /// recovery), and the error is gpg's.
    @Test func gpgExitingEarlyIsAnErrorNotASignal() throws {
        let t = try GPGProcess(arguments: ["--homedir", Self.home, "--no-such-option-at-all"], what: "gpg decryption of obj", hint: "")
        #expect {
            _ = try Self.run(t, Self.pattern(4 << 20), chunk: 1 << 20)
        } throws: { e in
            (e as? WALEError)?.message.hasPrefix("gpg decryption of obj failed (gpg exited 2)") == true
        }
    }

    /// A missing program is named, with what to install.
    @Test func missingGPGIsNamed() throws {
        #expect {
            _ = try GPGProcess(program: "wale-test-no-such-gpg", arguments: ["--homedir", Self.home, "--version"], what: "gpg encryption for key K", hint: "")
        } throws: { e in
            (e as? WALEError)?.message.contains("needs gpg, which is not installed") == true
        }
    }
}
