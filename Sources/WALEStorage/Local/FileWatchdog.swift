import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif
import WALECore

/// The file:// store's answer to a hung file system. An HTTP store has requests to time out; a
/// file store has system calls, and a read, write or fsync on an NFS or SMB mount whose server went
/// away blocks in the kernel with nothing to cancel it. So the store's file operations report here
/// (`begin`, `progress`, `pause`, `end`), and once armed a monitor thread applies the rule the HTTP
/// stores apply to bodies: an operation that moved less than `minRate` bytes per second over a
/// window of `stallSeconds` (or finished no step at all, for stat, list and unlink) ends the
/// process with the command's storage status (`onStall`), since the blocked thread cannot be
/// given back. Exiting works where the kernel lets a blocked thread be killed (NFS waits are
/// killable since Linux 2.6.25); time spent waiting on the data source (`pause`) is not counted.
public final class FileWatchdog: Sendable {
    public static let shared = FileWatchdog()

    struct Op {
        var what: String
        var windowStart: Double?  // nil while paused (waiting on the source, not on the store)
        var bytes = 0
        var stepped = false
    }

    struct Settings {
        var stallSeconds: Double
        var minRate: Double
        var onStall: @Sendable (WALEError) -> Void
    }

    private let ops = Mutex<(table: [Int: Op], next: Int)>(([:], 0))
    private let settings = Mutex<Settings?>(nil)

    private let monitoring = Mutex(false)

    /// Sets the rule; the monitor thread starts with the first file operation after it (a command
    /// on another store never starts it). Until armed, operations are tracked but never judged.
    public func arm(stallSeconds: Double, minRate: Double, onStall: @escaping @Sendable (WALEError) -> Void) {
        settings.withLock { $0 = Settings(stallSeconds: stallSeconds, minRate: minRate, onStall: onStall) }
    }

    private func startMonitorOnce() {
        guard settings.withLock({ $0 != nil }) else { return }
        let start = monitoring.withLock { started in
            defer { started = true }
            return !started
        }
        if start { DispatchQueue.global().async { self.monitor() } }
    }

    static func monotonic() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    public func begin(_ what: String) -> Int {
        startMonitorOnce()
        return ops.withLock { o in
            o.next += 1
            o.table[o.next] = Op(what: what, windowStart: Self.monotonic())
            return o.next
        }
    }

    /// Bytes moved (a read or a write), or one step of an operation that moves none.
    public func progress(_ id: Int, bytes: Int = 0) {
        ops.withLock { o in
            o.table[id]?.bytes += bytes
            if bytes == 0 { o.table[id]?.stepped = true }
            if o.table[id]?.windowStart == nil { o.table[id]?.windowStart = Self.monotonic() }
        }
    }

    /// The operation waits for its source, not for the store: not judged until the next progress.
    public func pause(_ id: Int) {
        ops.withLock { o in
            o.table[id]?.windowStart = nil
            o.table[id]?.bytes = 0
            o.table[id]?.stepped = false
        }
    }

    /// The source answered: the store's own work is judged again from now.
    public func resume(_ id: Int) {
        ops.withLock { o in
            o.table[id]?.windowStart = Self.monotonic()
            o.table[id]?.bytes = 0
            o.table[id]?.stepped = false
        }
    }

    public func end(_ id: Int) { _ = ops.withLock { $0.table.removeValue(forKey: id) } }

    /// Runs one blocking step (an open, a stat, an unlink) as its own operation.
    public func guarded<T>(_ what: String, _ body: () throws -> T) rethrows -> T {
        let id = begin(what)
        defer { end(id) }
        return try body()
    }

    private func monitor() {
        while true {
            usleep(250_000)
            guard let s = settings.withLock({ $0 }) else { continue }
            let now = Self.monotonic()
            let stalled: Op? = ops.withLock { o in
                for (id, op) in o.table {
                    guard let start = op.windowStart, now - start >= s.stallSeconds else { continue }
                    if !op.stepped && Double(op.bytes) < s.minRate * s.stallSeconds { return op }
                    o.table[id]?.windowStart = now
                    o.table[id]?.bytes = 0
                    o.table[id]?.stepped = false
                }
                return nil
            }
            if let op = stalled {
                s.onStall(
                    WALEError(
                        .io, "the file system under the file:// prefix made no progress on \(op.what) for \(Int(s.stallSeconds)) s",
                        detail: "moved \(op.bytes) bytes in the last window; a hung network file system (NFS, SMB) or a dead disk",
                        hint: "check the mount; WALE_STALL_TIMEOUT and WALE_STALL_MIN_RATE set this rule"))
            }
        }
    }
}

/// A source seen by the watchdog. Read from the store (`.reading`): each chunk is progress.
/// Written to the store (`.writing`): asking for the next chunk means the previous one is written,
/// and the wait for the source is not the store's.
final class WatchedSource: ByteSource {
    enum Side { case reading, writing }
    let inner: any ByteSource
    let id: Int
    let side: Side
    init(_ inner: any ByteSource, id: Int, side: Side) {
        self.inner = inner
        self.id = id
        self.side = side
    }
    func next() async throws -> [UInt8]? {
        if side == .writing { FileWatchdog.shared.pause(id) }
        let chunk = try await inner.next()
        if side == .writing { FileWatchdog.shared.resume(id) } else { FileWatchdog.shared.progress(id, bytes: chunk?.count ?? 0) }
        return chunk
    }
}
