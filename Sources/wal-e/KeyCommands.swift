import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import WALECodec
import WALECore
import WALEEngine
import WALEStorage

struct KeyCommand: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "key", abstract: "Manage the key pairs of wal-e's native encryption.",
        discussion: """
            Native encryption (an alternative to gpg): new objects are encrypted to the public keys named by \
            WALE_ENCRYPTION_PUBLIC_KEYS (comma-separated file paths); any private key named by \
            WALE_ENCRYPTION_PRIVATE_KEYS can read them. The database host needs only the public key.
            """,
        subcommands: [KeyGenerate.self, KeyUsage.self, KeyRewrap.self])
    @OptionGroup var global: GlobalOptions

    func execute() async throws -> WALEExitCode {
        throw WALEError(.user, "key needs a subcommand: generate, usage or rewrap", hint: "see wal-e key --help")
    }
}

struct KeyGenerate: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "generate", abstract: "Create a key pair: a private key file (mode 0600) and its public key file.",
        discussion: "Neither file may exist already. Keep the private key off the database host (and a copy offline); give the public key's path in WALE_ENCRYPTION_PUBLIC_KEYS there.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Where to write the private key (created with mode 0600).") var privateFile: String
    @Argument(help: "Where to write the public key.") var publicFile: String

    func execute() async throws -> WALEExitCode {
        let key = EncryptionPrivateKey.generate()
        try create(privateFile, key.text(), mode: 0o600)
        do {
            try create(publicFile, key.publicKey.text(), mode: 0o644)
        } catch {
            unlink(privateFile)
            throw error
        }
        writeStdout("key id \(key.publicKey.idText)\n")
        return .success
    }

    func create(_ path: String, _ text: String, mode: mode_t) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else {
            throw WALEError(.user, "cannot create \(path): \(POSIX.errorText())", hint: errno == EEXIST ? "it exists already: nothing is overwritten" : nil)
        }
        defer { close(fd) }
        fchmod(fd, mode)
        try POSIX.writeAll(fd, Array(text.utf8), path: path)
        if fsync(fd) != 0 { throw POSIX.error("fsync", path) }
    }
}

struct KeyUsage: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "usage", abstract: "List the key ids the archive's objects are encrypted to, with how many objects each.",
        discussion: """
            Reads the first bytes of every object under the prefix's basebackups_005/ and wal_005/ (no key is \
            needed): a key whose id is no longer listed can be retired. Clear and gpg objects are counted apart.
            """)
    @OptionGroup var global: GlobalOptions
    @OptionGroup var progressOptions: ProgressOptions
    @Flag(name: .customLong("json"), help: "Print the report as a JSON object instead of text.")
    var json = false
    @Option(name: [.customShort("p"), .customLong("pool-size")], help: "Objects read in parallel.")
    var poolSize: Int = 16

    func validate() throws {
        guard poolSize >= 1 else { throw ValidationError("--pool-size must be at least 1") }
    }

    func execute() async throws -> WALEExitCode {
        let ctx = try Context.make(global.flags, loggerName: "wal_e.operator.key")
        let progress = Progress(label: "key usage", unitName: "objects")
        progress.start(show: progressOptions.show(terse: ctx.config.terse))
        let r = try await KeyRotation(store: ctx.store, prefix: ctx.config.prefix, logger: ctx.logger, poolSize: poolSize).run(progress: progress)
        progress.finish()
        if json {
            writeStdout(r.json() + "\n")
        } else {
            var out = "\(r.objects) objects, \(r.native) natively encrypted, \(r.objects - r.native) not\n"
            for id in r.usage.keys.sorted() { out += "key id \(id): \(r.usage[id]!) objects\n" }
            writeStdout(out)
        }
        return .success
    }
}

struct KeyRewrap: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "rewrap", abstract: "Rotate keys: rewrap every object encrypted to an old key for new public keys, without re-encrypting it.",
        discussion: """
            Each object's data key is unwrapped with the old private key (--from) and wrapped anew for the public \
            keys of --to (comma-separated paths); the old key's entry is dropped, other recipients (an escrow key) \
            are kept. Only the header changes: the encrypted body is kept byte for byte (on S3 it is copied by the \
            store itself beyond its first 5 MiB; other stores stream the object through). Each object is replaced \
            whole or not at all, so the command can be stopped and run again. Afterwards key usage shows no object \
            for the old key id, and its private key is no longer needed. The first object that cannot be rewrapped \
            (damaged) stops the command with its error; those done stay done.
            """)
    @OptionGroup var global: GlobalOptions
    @OptionGroup var progressOptions: ProgressOptions
    @Option(name: .customLong("from"), help: "The private key file of the key being retired.")
    var from: String
    @Option(name: .customLong("to"), help: "The public key file(s) to wrap for instead (comma-separated paths).")
    var to: String
    @Flag(name: .customLong("dry-run"), help: "Count what would be rewrapped; change nothing.")
    var dryRun = false
    @Flag(name: .customLong("json"), help: "Print the report as a JSON object instead of text.")
    var json = false
    @Option(name: [.customShort("p"), .customLong("pool-size")], help: "Objects rewrapped in parallel.")
    var poolSize: Int = 8

    func validate() throws {
        guard poolSize >= 1 else { throw ValidationError("--pool-size must be at least 1") }
    }

    func execute() async throws -> WALEExitCode {
        let ctx = try Context.make(global.flags, loggerName: "wal_e.operator.key")
        let old = try EncryptionKeys.privateKey(path: from)
        let new = try EncryptionKeys.paths(to).map { try EncryptionKeys.publicKey(path: $0) }
        guard !new.isEmpty else { throw WALEError(.user, "--to names no public key file") }
        let progress = Progress(label: "key rewrap", unitName: "objects")
        progress.start(show: progressOptions.show(terse: ctx.config.terse))
        let rotation = KeyRotation(store: ctx.store, prefix: ctx.config.prefix, logger: ctx.logger, poolSize: poolSize)
        let r = try await rotation.run(rewrapFrom: old, to: new, dryRun: dryRun, progress: progress)
        progress.finish()
        let moved = "\(r.moved.read) bytes read, \(r.moved.sent) bytes sent, \(r.moved.copiedInStore) bytes copied by the store"
        ctx.logger.info(
            dryRun ? "dry run: \(r.rewrapped) of \(r.objects) objects would be rewrapped from key id \(old.publicKey.idText)"
                : "rewrapped \(r.rewrapped) of \(r.objects) objects from key id \(old.publicKey.idText) to \(new.map(\.idText).joined(separator: ", "))",
            detail: dryRun ? nil : moved, ["action": "key-rewrap"])
        if json { writeStdout(r.json() + "\n") }
        return .success
    }
}
