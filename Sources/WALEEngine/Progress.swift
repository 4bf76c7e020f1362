#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import WALECore
import WALEStorage

/// One updating line on a terminal for long work (backup-push, backup-fetch, verify, delete
/// --confirm): bytes done of the total when it is known, the rate, the time left, units (partitions
/// or objects) done. The workers only add to atomic counters; a ticker redraws the line twice a
/// second. Log lines written to stderr meanwhile first clear it (`clearLine`), so they never
/// start in the middle of it. Off unless the command turned it on (stderr a terminal, not
/// --terse, or --progress).
public final class Progress: Sendable {
    let label: String
    let unitName: String
    let done = Atomic<Int64>(0)
    let total = Atomic<Int64>(0)
    let unitsDone = Atomic<Int>(0)
    let unitsTotal = Atomic<Int>(0)
    let storedBytes = Atomic<Int64>(0)
    let stopped = Atomic<Bool>(false)
    let started = POSIX.monotonic()
    /// The line on screen, if any (one at a time in a process).
    static let active = Mutex<Progress?>(nil)

    public init(label: String, unitName: String = "partitions") {
        self.label = label
        self.unitName = unitName
    }

    public func add(bytes n: Int) { done.add(Int64(n), ordering: .relaxed) }
    public func setTotal(bytes n: Int64) { total.store(n, ordering: .relaxed) }
    public func unitDone(_ n: Int = 1) { unitsDone.add(n, ordering: .relaxed) }
    public func setTotal(units n: Int) { unitsTotal.store(n, ordering: .relaxed) }
    public func add(stored n: Int64) { storedBytes.add(n, ordering: .relaxed) }
    public var bytesDone: Int64 { done.load(ordering: .relaxed) }
    public var bytesStored: Int64 { storedBytes.load(ordering: .relaxed) }

    /// The summary every long command ends with: `N bytes read, M stored, R MiB/s, T s`.
    public func summary(read: String = "read", stored: Bool = true) -> String {
        let secs = max(elapsed, 1e-3)
        return "\(bytesDone) bytes \(read)" + (stored ? ", \(bytesStored) stored" : "")
            + ", \(String(format2: Double(bytesDone) / secs / 1_048_576)) MiB/s, \(String(format2: secs)) s"
    }
    public var elapsed: Double { POSIX.monotonic() - started }

    /// Seconds between redraws: `WALE_PROGRESS_INTERVAL` (0.01–60), half a second by default.
    static let interval: Double = {
        guard let v = getenv("WALE_PROGRESS_INTERVAL").flatMap({ Double(String(cString: $0)) }), v >= 0.01, v <= 60 else { return 0.5 }
        return v
    }()

    /// Starts redrawing the line on stderr every `interval` until `finish` (when `show`).
    public func start(show: Bool) {
        guard show else { return }
        Self.active.withLock { $0 = self }
        Task.detached { [self] in
            while !stopped.load(ordering: .relaxed) {
                try? await Task.sleep(nanoseconds: UInt64(Self.interval * 1e9))
                if stopped.load(ordering: .relaxed) { break }
                Self.write("\r" + line() + "\u{1B}[K")
            }
        }
    }

    /// Stops and clears the line (the command's summary log line follows).
    public func finish() {
        guard !stopped.exchange(true, ordering: .relaxed) else { return }
        guard Self.active.withLock({ $0 === self }) else { return }
        Self.active.withLock { if $0 === self { $0 = nil } }
        Self.write("\r\u{1B}[K")
    }

    /// Called by the stderr log sink before a record: the record starts on a clean line.
    public static func clearLine() {
        if active.withLock({ $0 != nil }) { write("\r\u{1B}[K") }
    }

    /// `backup-fetch: 1.2 GiB of 3.4 GiB (35%), 210 MiB/s, 0:11 left, partitions 3/27`.
    func line() -> String {
        let d = done.load(ordering: .relaxed), t = total.load(ordering: .relaxed)
        let secs = max(elapsed, 1e-3)
        let rate = Double(d) / secs
        var s = "\(label): \(Self.size(d))"
        if t > 0 {
            s += " of \(Self.size(t)) (\(min(100, Int(Double(d) * 100 / Double(t))))%)"
        }
        s += ", \(Self.size(Int64(rate)))/s"
        if t > d && rate > 0 { s += ", \(Self.clock(Double(t - d) / rate)) left" }
        let u = unitsDone.load(ordering: .relaxed), ut = unitsTotal.load(ordering: .relaxed)
        if u > 0 || ut > 0 { s += ", \(unitName) \(u)" + (ut > 0 ? "/\(ut)" : "") }
        return s
    }

    static func size(_ b: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(b)
        var i = 0
        while v >= 1024 && i < units.count - 1 {
            v /= 1024
            i += 1
        }
        return i == 0 ? "\(b) B" : String(format2: v) + " " + units[i]
    }

    static func clock(_ s: Double) -> String {
        let t = Int(s.rounded())
        let (h, m, sec) = (t / 3600, t / 60 % 60, t % 60)
        let mm = m < 10 && h > 0 ? "0\(m)" : "\(m)"
        return (h > 0 ? "\(h):" : "") + mm + ":" + (sec < 10 ? "0" : "") + "\(sec)"
    }

    static func write(_ s: String) {
        var s = s
        s.withUTF8 { p in _ = Glibc.write(2, p.baseAddress, p.count) }
    }
}
