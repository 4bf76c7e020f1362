#if canImport(Glibc)
import Glibc
#endif
import CWALESupport
import WALECore

/// WAL-E's encryption: the compressed stream piped through `gpg`, as WAL-E 1.1 does it.
///
/// Writing: `gpg --batch -e -z 0 -r KEY` after the compressor (the key suffix stays `.lzo`, as
/// WAL-E keeps it); reading: `gpg -d -q --batch` before the decompressor, chosen by the object's
/// first bytes (an OpenPGP packet), so encrypted and clear objects can share an archive. The
/// keys live in gpg's keyring (`GNUPGHOME`); wal-e never sees them, only the key ID.
public enum GPG {
    /// The encryptor for new objects.
    public static func encryptor(keyID: String) throws -> GPGProcess {
        try GPGProcess(
            arguments: ["--batch", "-e", "-z", "0", "-r", keyID], what: "gpg encryption for key \(keyID)",
            hint: "the public key \(keyID) must be in the keyring of the user running wal-e (GNUPGHOME) and trusted (gpg --import, then gpg --edit-key \(keyID) trust)")
    }

    /// `compressor`, followed by encryption to `keyID` when one is set.
    public static func sealing(_ compressor: any ByteTransform, keyID: String?) throws -> any ByteTransform {
        guard let keyID else { return compressor }
        return ChainedTransform(compressor, try encryptor(keyID: keyID))
    }

    /// The decryptor of an object read back (`name` in messages).
    public static func decryptor(name: String) throws -> GPGProcess {
        try GPGProcess(
            arguments: ["-d", "-q", "--batch"], what: "gpg decryption of \(name)",
            hint: "the archive's secret key must be in the keyring of the user running wal-e (GNUPGHOME), without a passphrase or with gpg-agent holding it")
    }

    /// Refuses, before anything is written, a key gpg cannot encrypt to: unknown, revoked,
    /// expired or without an encryption subkey.
    public static func checkEncryptionKey(_ keyID: String) throws {
        let p = try GPGProcess(
            arguments: ["--batch", "--with-colons", "--list-keys", "--", keyID], what: "gpg encryption for key \(keyID)",
            hint: "import the public key into the keyring of the user running wal-e (GNUPGHOME): gpg --import KEYFILE")
        try p.finish()
        var listing: [UInt8] = []
        while true {
            let chunk = try p.pull(limit: 1 << 20)
            if chunk.isEmpty { break }
            listing += chunk
        }
        // Colon listing: field 2 is the validity (e expired, r revoked, i invalid, d disabled),
        // field 12 the capabilities; an upper-case E on the `pub` line says the key as a whole can
        // encrypt (it has a usable encryption subkey).
        let lines = String(decoding: listing, as: UTF8.self).split(separator: "\n")
        let usable = lines.contains { line in
            let f = line.split(separator: ":", omittingEmptySubsequences: false)
            return f.count > 11 && f[0] == "pub" && !["e", "r", "i", "d"].contains(f[1]) && f[11].contains("E")
        }
        guard usable else {
            throw WALEError(
                .user, "gpg encryption for key \(keyID) is not possible: the key cannot encrypt",
                detail: "it is expired, revoked, disabled or has no encryption subkey",
                hint: "set WALE_GPG_KEY_ID to a key with a valid encryption subkey")
        }
    }
}

/// A `gpg` child process as a pipeline stage: input goes to its stdin, output comes from its
/// stdout. The pipes are non-blocking and polled together, so a full stdin never waits on an
/// unread stdout; memory stays at about one input chunk. The exit status is checked at the end
/// of the output: a failed gpg is an error, never a short stream.
public final class GPGProcess: ByteTransform {
    private var pid: pid_t = 0
    private var stdinFD: Int32 = -1
    private var stdoutFD: Int32 = -1
    private var stderrFD: Int32 = -1
    private var output = InputBuffer()
    private var errors: [UInt8] = []
    private var outputEnded = false
    private var exited = false
    private let what: String
    private let hint: String

    /// A gpg that exits before reading all its input (a bad key, a failed decryption) must make
    /// our write fail with EPIPE, not kill wal-e with SIGPIPE: a restore_command killed by a
    /// signal ends PostgreSQL's recovery. Ignored once for the process, from the first gpg on;
    /// gpg itself gets the default back.
    private static let ignoreSIGPIPE: Void = { _ = signal(SIGPIPE, SIG_IGN) }()

    /// Starts `gpg arguments...` (found on PATH; another `program` only in tests).
    public init(program: String = "gpg", arguments: [String], what: String, hint: String) throws {
        self.what = what
        self.hint = hint
        Self.ignoreSIGPIPE
        var pipes: [[Int32]] = []
        for _ in 0..<3 {
            var fds: [Int32] = [-1, -1]
            // CLOEXEC: another gpg started at the same time must not inherit our ends (its copy
            // of a stdin write end would keep our gpg from ever seeing end of input).
            guard wale_pipe_cloexec(&fds) == 0 else {
                let e = errno
                pipes.flatMap { $0 }.forEach { close($0) }
                throw gpgFailure("pipe", "gpg", e)
            }
            pipes.append(fds)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, pipes[0][0], 0)
        posix_spawn_file_actions_adddup2(&actions, pipes[1][1], 1)
        posix_spawn_file_actions_adddup2(&actions, pipes[2][1], 2)
        let argv: [UnsafeMutablePointer<CChar>?] = ([program] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF))
        let rc = posix_spawnp(&pid, program, &actions, &attributes, argv, environ)
        close(pipes[0][0])
        close(pipes[1][1])
        close(pipes[2][1])
        stdinFD = pipes[0][1]
        stdoutFD = pipes[1][0]
        stderrFD = pipes[2][0]
        guard rc == 0 else {
            closeAll()
            exited = true
            if rc == ENOENT {
                throw WALEError(
                    .user, "\(what) needs gpg, which is not installed (or not on PATH)",
                    hint: "install GnuPG (apt-get install gnupg) or unset WALE_GPG_KEY_ID")
            }
            throw gpgFailure("start", "gpg", rc)
        }
        for fd in [stdinFD, stdoutFD, stderrFD] { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
    }

    deinit {
        closeAll()
        if !exited && pid > 0 {
            // Abandoned (an error elsewhere in the pipeline): no gpg is left behind.
            kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        }
    }

    public func push(_ input: [UInt8]) throws {
        guard stdinFD >= 0 else { throw WALEError(.internal, "\(what): input after its end") }
        var done = 0
        try input.withUnsafeBytes { buf in
            while done < buf.count {
                let n = write(stdinFD, buf.baseAddress! + done, buf.count - done)
                if n > 0 {
                    done += n
                    continue
                }
                let e = errno
                if n < 0 && e == EINTR { continue }
                if n < 0 && e == EPIPE {
                    // gpg stopped reading: it failed; its status and message tell why.
                    try drainToExit()
                    throw WALEError(.internal, "\(what): gpg stopped reading its input but exited successfully")
                }
                guard n < 0 && e == EAGAIN else { throw gpgFailure("write to", "gpg", e) }
                try wait(forInput: true)
            }
        }
    }

    public func finish() throws {
        if stdinFD >= 0 {
            close(stdinFD)
            stdinFD = -1
        }
    }

    public func pull(limit: Int) throws -> [UInt8] {
        try readAvailable()
        while output.count == 0 && stdinFD < 0 && !outputEnded {
            try wait(forInput: false)
        }
        if output.count == 0 && outputEnded { try reap() }
        let n = min(limit, output.count)
        guard n > 0 else { return [] }
        let out = Array(output.slice(0, n))
        output.consume(n)
        return out
    }

    /// Waits until stdin can take more (when `forInput`) or stdout/stderr have something, reading
    /// whatever has arrived.
    private func wait(forInput: Bool) throws {
        var fds: [pollfd] = []
        if forInput && stdinFD >= 0 { fds.append(pollfd(fd: stdinFD, events: Int16(POLLOUT), revents: 0)) }
        if stdoutFD >= 0 { fds.append(pollfd(fd: stdoutFD, events: Int16(POLLIN), revents: 0)) }
        if stderrFD >= 0 { fds.append(pollfd(fd: stderrFD, events: Int16(POLLIN), revents: 0)) }
        if fds.isEmpty { return }
        let rc = poll(&fds, nfds_t(fds.count), -1)
        if rc < 0 && errno != EINTR { throw gpgFailure("poll", "gpg", errno) }
        try readAvailable()
    }

    /// Reads what stdout and stderr hold now, without blocking.
    private func readAvailable() throws {
        var chunk = [UInt8](repeating: 0, count: 256 << 10)
        while stdoutFD >= 0 {
            let n = read(stdoutFD, &chunk, chunk.count)
            if n > 0 { output.append(Array(chunk[0..<n])); continue }
            if n == 0 { close(stdoutFD); stdoutFD = -1; outputEnded = true; break }
            if errno == EINTR { continue }
            if errno == EAGAIN { break }
            throw gpgFailure("read from", "gpg", errno)
        }
        while stderrFD >= 0 {
            let n = read(stderrFD, &chunk, chunk.count)
            if n > 0 {
                if errors.count < 16 << 10 { errors += chunk[0..<n] }
                continue
            }
            if n == 0 { close(stderrFD); stderrFD = -1; break }
            if errno == EINTR { continue }
            break
        }
    }

    /// Reads until gpg closes its output, then checks how it exited.
    private func drainToExit() throws {
        if stdinFD >= 0 { close(stdinFD); stdinFD = -1 }
        while !outputEnded { try wait(forInput: false) }
        try reap()
    }

    /// Collects the exit status (once stdout has ended): anything but 0 is an error with gpg's
    /// own words.
    private func reap() throws {
        guard !exited else { return }
        // stderr may still be open for a moment after stdout closed.
        while stderrFD >= 0 {
            var p = pollfd(fd: stderrFD, events: Int16(POLLIN), revents: 0)
            _ = poll(&p, 1, -1)
            try readAvailable()
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { throw gpgFailure("wait for", "gpg", errno) }
        }
        exited = true
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        guard code != 0 else { return }
        let said = String(decoding: errors, as: UTF8.self)
            .split(separator: "\n").map { String($0.drop { $0 == " " || $0 == "\t" }) }.filter { !$0.isEmpty }
        throw WALEError(
            .user, "\(what) failed (gpg exited \(code))",
            detail: said.isEmpty ? nil : said.suffix(4).joined(separator: "; "), hint: hint)
    }

    private func closeAll() {
        for fd in [stdinFD, stdoutFD, stderrFD] where fd >= 0 { close(fd) }
        stdinFD = -1
        stdoutFD = -1
        stderrFD = -1
    }
}

/// Two stages one after the other (decryption, then decompression).
public final class ChainedTransform: ByteTransform {
    private let first: any ByteTransform
    private let second: any ByteTransform
    private var firstFinished = false
    private var secondFinished = false

    public init(_ first: any ByteTransform, _ second: any ByteTransform) {
        self.first = first
        self.second = second
    }

    public func push(_ input: [UInt8]) throws { try first.push(input) }

    public func finish() throws {
        try first.finish()
        firstFinished = true
    }

    public func pull(limit: Int) throws -> [UInt8] {
        while true {
            let out = try second.pull(limit: limit)
            if !out.isEmpty { return out }
            let middle = try first.pull(limit: pipelineChunkSize)
            if !middle.isEmpty {
                try second.push(middle)
                continue
            }
            if firstFinished && !secondFinished {
                try second.finish()
                secondFinished = true
                continue
            }
            return []
        }
    }
}

/// A system call around the gpg child failed.
private func gpgFailure(_ operation: String, _ target: String, _ code: Int32) -> WALEError {
    WALEError(.io, "could not \(operation) \(target): \(String(cString: strerror(code)))")
}
