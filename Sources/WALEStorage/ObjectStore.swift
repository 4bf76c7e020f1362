import WALECore

/// What a store knows about one object.
public struct ObjectInfo: Sendable, Equatable {
    /// The key relative to the store (bucket, container or file-system root).
    public var key: String
    public var size: Int64
    /// Seconds since the epoch, with sub-second precision where the backend has it.
    public var lastModified: Double
    /// User metadata (backends that have it; lower-case names).
    public var metadata: [String: String]
    /// The last-modified time exactly as the backend's listing wrote it (S3's ListObjects), which
    /// WAL-E printed verbatim in backup-list.
    public var lastModifiedText: String?

    public init(key: String, size: Int64, lastModified: Double, metadata: [String: String] = [:], lastModifiedText: String? = nil) {
        self.key = key
        self.size = size
        self.lastModified = lastModified
        self.metadata = metadata
        self.lastModifiedText = lastModifiedText
    }
}

/// Options for a write.
/// Metadata computed after the source ended. The store calls `value()` only after it read the
/// source to its end, in the same task, so the captured state is never shared.
public final class LateMetadata: @unchecked Sendable {
    let compute: () -> [String: String]
    public init(_ compute: @escaping () -> [String: String]) { self.compute = compute }
    public func value() -> [String: String] { compute() }
}

public struct WriteOptions: Sendable {
    /// Create the object only if no object has this key; otherwise report `.alreadyExists` and
    /// leave the existing object untouched (WAL overwrite protection).
    public var ifAbsent = false
    /// The caller's own check that the object may be created, run while the store reads the
    /// source (wal-push looks for the segment under every codec's name): the store awaits it once
    /// the bytes are ready and before anything becomes visible, and reports `.alreadyExists`
    /// without writing when it says no. A store with a gate makes no existence check of its own
    /// (with `ifAbsent` it still creates only-if-absent where it can).
    public var gate: WriteGate?
    /// The expected size of the stream, if known (a WAL segment's file size): lets a backend
    /// that buffers choose one request over several.
    public var sizeHint: Int64?
    public var contentType: String?
    public var metadata: [String: String] = [:]
    /// Metadata known only once the source has been read to the end (a digest of the content);
    /// backends that send metadata before the body use it when the whole object fits one request.
    public var lateMetadata: LateMetadata?
    /// Makes the body again from the start (a file on disk), with its late metadata. A store that
    /// buffers whole objects then takes upload memory as the body grows rather than the most it
    /// could need, and reads the body again if memory runs short.
    public var reread: (@Sendable () throws -> RereadBody)?
    /// Flush to stable storage before reporting success (where the backend can).
    public var durable = true
    /// A directory on local disk where a store that sends whole objects from memory may spool the
    /// body instead (an unnamed temporary file): wal-push gives the WAL directory, so a pool's
    /// segments go up several at once instead of one at a time through the upload memory budget.
    /// Without one, or where no spool file can be made there, the body is held in memory.
    public var spoolDirectory: String?

    public init(ifAbsent: Bool = false, contentType: String? = nil, metadata: [String: String] = [:]) {
        self.ifAbsent = ifAbsent
        self.contentType = contentType
        self.metadata = metadata
    }
}

/// See `WriteOptions.reread`.
public struct RereadBody {
    public var source: any ByteSource
    public var lateMetadata: LateMetadata?
    public init(source: any ByteSource, lateMetadata: LateMetadata?) {
        self.source = source
        self.lateMetadata = lateMetadata
    }
}

/// A read's source that also carries the object's user metadata (the HTTP stores: from the GET's
/// own headers, so no HEAD is needed to learn it). Readers cast the source they are given.
public protocol ObjectMetadataSource: ByteSource {
    /// Lower-case names, as `ObjectInfo.metadata`.
    var metadata: [String: String] { get }
}

/// See `WriteOptions.gate`.
public final class WriteGate: Sendable {
    let check: @Sendable () async throws -> Bool
    /// `check` returns whether the write may go ahead.
    public init(_ check: @escaping @Sendable () async throws -> Bool) { self.check = check }
    public func mayProceed() async throws -> Bool { try await check() }
}

public enum WriteOutcome: Sendable, Equatable {
    case created
    /// `ifAbsent` was set and an object already had the key; nothing was written.
    case alreadyExists
}

/// An object store: the only thing the engine knows about storage. Every backend passes the same
/// conformance tests. A missing object is `nil` from `info` and a `.notFound` `WALEError` from `read`;
/// deleting a missing key succeeds. Writes are all-or-nothing: readers never see a partial object.
public protocol ObjectStore: Sendable {
    func info(_ key: String) async throws -> ObjectInfo?
    /// Streams an object into `body`; the source must not escape the closure.
    func read<R>(_ key: String, _ body: (any ByteSource) async throws -> R) async throws -> R
    func write(_ key: String, from source: any ByteSource, options: WriteOptions) async throws -> WriteOutcome
    /// Every object whose key starts with `prefix`, in the backend's listing order: key order for
    /// object stores; directory order for file:// (what WAL-E's `os.walk` printed). Callers that
    /// need an order sort.
    func list(prefix: String) async throws -> [ObjectInfo]
    /// Deletes keys; missing keys are not an error.
    func delete(_ keys: [String]) async throws
    /// Whether `WriteOptions.lateMetadata` is stored (and worth computing).
    var storesLateMetadata: Bool { get }
    /// Removes what writes killed part way left under `prefix` that the store keeps (and bills)
    /// but never lists as objects: S3 multipart uploads nobody completed or aborted, Swift
    /// segments no manifest refers to. Only leftovers last touched more than `olderThan` seconds
    /// before `now` (a running upload is younger). Returns how many uploads were removed.
    func sweepAbandonedUploads(prefix: String, olderThan: Double, now: Double) async throws -> Int
    /// The first `length` bytes of an object (fewer if it is shorter), without reading the rest.
    func readHead(_ key: String, length: Int) async throws -> [UInt8]
    /// Replaces the object's first `dropping` bytes with `head`, keeping the rest and `original`'s
    /// metadata (key rewrap: the body of an encrypted object is not rewritten). All-or-nothing, as
    /// every write. Stores that can copy a byte range server-side keep the body there; the others
    /// stream the object through.
    func replaceHead(of original: ObjectInfo, dropping: Int, with head: [UInt8]) async throws -> HeadReplacement
}

/// What `replaceHead` moved: bytes read from the store, bytes sent to it, and bytes the store
/// copied within itself.
public struct HeadReplacement: Sendable, Equatable {
    public var read: Int64 = 0
    public var sent: Int64 = 0
    public var copiedInStore: Int64 = 0
    public init(read: Int64 = 0, sent: Int64 = 0, copiedInStore: Int64 = 0) {
        self.read = read
        self.sent = sent
        self.copiedInStore = copiedInStore
    }
}

extension ObjectStore {
    public var storesLateMetadata: Bool { false }
    /// Nothing to sweep: file:// sweeps its temporaries at every write; Azure drops uncommitted
    /// blocks and GCS abandoned resumable sessions by themselves after a week.
    public func sweepAbandonedUploads(prefix: String, olderThan: Double, now: Double) async throws -> Int { 0 }

    public func readHead(_ key: String, length: Int) async throws -> [UInt8] {
        try await read(key) { source in
            var head: [UInt8] = []
            while head.count < length, let chunk = try await source.next() { head += chunk.prefix(length - head.count) }
            return head
        }
    }

    public func replaceHead(of original: ObjectInfo, dropping: Int, with head: [UInt8]) async throws -> HeadReplacement {
        try await streamingReplaceHead(of: original, dropping: dropping, with: head)
    }

    /// Streams the object through: its first `dropping` bytes replaced, the rest passed on as read.
    public func streamingReplaceHead(of original: ObjectInfo, dropping: Int, with head: [UInt8]) async throws -> HeadReplacement {
        try await read(original.key) { source in
            let swapped = HeadSwapSource(source, dropping: dropping, head: head)
            var options = WriteOptions(metadata: original.metadata)
            options.sizeHint = original.size - Int64(dropping) + Int64(head.count)
            _ = try await write(original.key, from: swapped, options: options)
            return HeadReplacement(read: swapped.read, sent: swapped.sent)
        }
    }
}

/// A source that drops its input's first bytes and starts with others instead.
final class HeadSwapSource: ByteSource {
    private let source: any ByteSource
    private var toDrop: Int
    private var head: [UInt8]?
    private(set) var read: Int64 = 0
    private(set) var sent: Int64 = 0

    init(_ source: any ByteSource, dropping: Int, head: [UInt8]) {
        self.source = source
        toDrop = dropping
        self.head = head
    }

    func next() async throws -> [UInt8]? {
        while let chunk = try await source.next() {
            read += Int64(chunk.count)
            var out = chunk
            if toDrop > 0 {
                let n = min(toDrop, out.count)
                out.removeFirst(n)
                toDrop -= n
                if toDrop > 0 { continue }
            }
            if let h = head {
                head = nil
                out = h + out
            }
            if out.isEmpty { continue }
            sent += Int64(out.count)
            return out
        }
        guard toDrop == 0 else { throw WALEError(.corrupt, "the object ended inside the part being replaced") }
        if let h = head {
            head = nil
            sent += Int64(h.count)
            return h
        }
        return nil
    }
}
