import WALECodec
import WALECore
import WALEStorage

/// `key usage` and `key rewrap`: both read the header of every object under the prefix's
/// basebackups_005/ and wal_005/ (a ranged read of its first bytes; clear, gpg and sentinel objects
/// are recognised from them and left alone). Rewrap replaces only the header of each object wrapped
/// for the retired key (see `NativeEncryption.rewrap`): the body is kept byte for byte, copied by the
/// store itself where it can (S3), streamed through otherwise.
public struct KeyRotation: Sendable {
    public let store: any ObjectStore
    public let prefix: StoragePrefix
    public let logger: Logger
    public let poolSize: Int

    public init(store: any ObjectStore, prefix: StoragePrefix, logger: Logger, poolSize: Int) {
        self.store = store
        self.prefix = prefix
        self.logger = logger
        self.poolSize = max(1, poolSize)
    }

    /// What one pass over the archive found and did.
    public struct Report: Sendable {
        public var objects = 0
        /// Key id → how many objects are encrypted to it.
        public var usage: [String: Int] = [:]
        public var native = 0
        public var rewrapped = 0
        public var moved = HeadReplacement()
        /// How many objects the key being retired still wraps after the pass (0 when it is done).
        public var remaining = 0

        public func json() -> String {
            let o: JSON = .object([
                ("objects", .int(Int64(objects))), ("encrypted_objects", .int(Int64(native))),
                ("key_ids", .object(usage.keys.sorted().map { ($0, .int(Int64(usage[$0]!))) })),
                ("rewrapped", .int(Int64(rewrapped))), ("still_wrapped_for_retired_key", .int(Int64(remaining))),
                ("bytes_read", .int(moved.read)), ("bytes_sent", .int(moved.sent)), ("bytes_copied_in_store", .int(moved.copiedInStore)),
            ])
            return o.serialized()
        }
    }

    static let firstRead = 4096

    enum Outcome: Sendable {
        case clear
        case native(ids: [String], rewrapped: HeadReplacement?)
    }

    /// Reads every header; with `from` and `to`, rewraps those wrapped for `from`.
    public func run(rewrapFrom from: EncryptionPrivateKey? = nil, to: [EncryptionPublicKey] = [], dryRun: Bool = false, progress: Progress? = nil) async throws -> Report {
        var objects: [ObjectInfo] = []
        for dir in [prefix.baseBackupsDirectory, prefix.walDirectory] { objects += try await store.list(prefix: dir) }
        objects = objects.filter { !$0.key.hasSuffix(BackupName.sentinelSuffix) && $0.size >= Int64(NativeEncryption.magic.count) }
        progress?.setTotal(units: objects.count)
        let (store, logger) = (self.store, self.logger)
        let outcomes = try await boundedConcurrently(objects, width: poolSize) { object -> Outcome in
            defer { progress?.unitDone(1) }
            // One read covers the header of an object with up to 46 recipients; a longer one is read again.
            var head = try await store.readHead(object.key, length: Self.firstRead)
            guard head.count >= 11, var length = NativeEncryption.headerLength(head) else { return .clear }
            if length == 0 {
                length = 11 + Int(head[10]) * NativeEncryption.stanzaSize
                head = try await store.readHead(object.key, length: length)
                guard head.count == length else { throw WALEError(.corrupt, "\(object.key) ends inside its native encryption header") }
            }
            let ids = NativeEncryption.recipients(ofHeader: head) ?? []
            guard let from else { return .native(ids: ids, rewrapped: nil) }
            let r: NativeEncryption.Rewrap
            do {
                r = try NativeEncryption.rewrap(head: head, from: from, to: to)
            } catch let e as WALEError {
                throw WALEError(e.kind, "\(object.key): \(e.message)", hint: "the object is damaged: check it with wal-e verify")
            }
            guard case .rewrapped(let header, let oldLength, _, let after) = r else { return .native(ids: ids, rewrapped: nil) }
            if dryRun { return .native(ids: ids, rewrapped: HeadReplacement()) }
            // The metadata (wal-push's content digest) goes with the new object.
            let current = try await store.info(object.key) ?? object
            let moved = try await store.replaceHead(of: current, dropping: oldLength, with: header)
            logger.debug("rewrapped \(object.key)", detail: "key ids \(ids.joined(separator: ",")) → \(after.joined(separator: ","))")
            return .native(ids: after, rewrapped: moved)
        }
        var report = Report()
        report.objects = objects.count
        for o in outcomes {
            guard case .native(let ids, let moved) = o else { continue }
            report.native += 1
            for id in ids { report.usage[id, default: 0] += 1 }
            if let from, ids.contains(from.publicKey.idText) { report.remaining += 1 }
            if let m = moved {
                report.rewrapped += 1
                report.moved.read += m.read
                report.moved.sent += m.sent
                report.moved.copiedInStore += m.copiedInStore
            }
        }
        return report
    }
}
