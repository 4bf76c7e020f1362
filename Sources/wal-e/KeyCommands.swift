import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import WALECodec
import WALECore
import WALEStorage

struct KeyCommand: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "key", abstract: "Manage the key pairs of wal-e's native encryption.",
        discussion: """
            Native encryption (an alternative to gpg): new objects are encrypted to the public keys named by \
            WALE_ENCRYPTION_PUBLIC_KEYS (comma-separated file paths); any private key named by \
            WALE_ENCRYPTION_PRIVATE_KEYS can read them. The database host needs only the public key.
            """,
        subcommands: [KeyGenerate.self])
    @OptionGroup var global: GlobalOptions

    func execute() async throws -> WALEExitCode {
        throw WALEError(.user, "key needs a subcommand: generate", hint: "see wal-e key --help")
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
