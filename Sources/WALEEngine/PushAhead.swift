#if canImport(Glibc)
import Glibc
#endif
import WALECore
import WALEStorage

/// Asynchronous archiving (`WALE_ARCHIVE_ASYNC=on`): a detached helper process archives the
/// `.ready` backlog ahead of PostgreSQL while each `archive_command` call returns as soon as its
/// own segment is archived. PostgreSQL calls `archive_command` for one segment at a time; with a
/// pool, the calls that find their segment already pushed (a marker, `PushedMarkers`) still cost a
/// process start each, during which nothing compresses. The helper keeps compressing through them.
///
/// Who archives a segment is settled by `flock(2)` on `<pg_wal>/.wal-e/ahead/<segment>`: the helper
/// claims each segment while it pushes it, and releases it after writing its marker; PostgreSQL's
/// call for a segment claims it too, waiting (bounded) for a helper holding it, then finds the
/// marker or pushes the segment itself. A lock dies with its process, so a helper killed mid-push
/// leaves nothing to clean up: the call pushes in-band. One helper at a time (`ahead.lock`).
struct AheadClaims {
    let walDirectory: String
    var root: String { walDirectory + "/.wal-e/ahead" }
    var helperLock: String { walDirectory + "/.wal-e/ahead.lock" }

    /// A claim held: the open, locked file.
    struct Claim {
        fileprivate let fd: Int32
        func release() { close(fd) }
    }

    /// Claims `name` if no other process holds it; nil if one does or the claim file cannot be
    /// opened (the helper then leaves the segment to PostgreSQL's own call).
    func tryClaim(_ name: String) -> Claim? {
        if case .locked(let fd) = attempt(name) { return Claim(fd: fd) }
        return nil
    }

    private func attempt(_ name: String) -> Lock { Self.tryLock(root + "/" + name) }

    /// Claims `name`, waiting while another process holds it, at most `timeout` seconds. `waited`:
    /// someone held it (a helper was archiving it). A nil claim: the holder is stuck, or the claim
    /// file cannot be opened; the caller archives the segment anyway (an identical object is
    /// accepted as archived).
    func claim(_ name: String, timeout: Double) -> (claim: Claim?, waited: Bool) {
        let deadline = POSIX.monotonic() + timeout
        var waited = false
        while true {
            switch attempt(name) {
            case .locked(let fd): return (Claim(fd: fd), waited)
            case .unavailable: return (nil, waited)
            case .held:
                guard POSIX.monotonic() < deadline else { return (nil, true) }
                waited = true
                usleep(1000)
            }
        }
    }

    /// The helper's lock: the fd holding it, or nil when another helper is running (or the lock
    /// file cannot be opened: then no helper can run).
    func lockHelper() -> Int32? {
        if case .locked(let fd) = Self.tryLock(helperLock) { return fd }
        return nil
    }

    /// Whether a helper holds its lock (a new one would exit at once).
    var helperRunning: Bool {
        switch Self.tryLock(helperLock) {
        case .locked(let fd):
            close(fd)
            return false
        case .held, .unavailable: return true
        }
    }

    /// Removes the claim files of segments that are no longer `.ready`, where nobody holds them.
    func sweep() {
        guard let names = try? POSIX.listDirectory(root) else { return }
        for n in names where POSIX.lstat(walDirectory + "/archive_status/" + n + ".ready") == nil {
            guard let c = tryClaim(n) else { continue }
            unlink(root + "/" + n)
            c.release()
        }
    }

    enum Lock {
        case locked(Int32)
        /// Another process holds it.
        case held
        /// The file cannot be opened or locked (permissions, a full or read-only disk).
        case unavailable
    }

    /// An exclusive, non-blocking `flock` on `path` (created if absent, its directory too),
    /// checked to still be the file at `path` (a sweep may unlink it between our open and our lock).
    static func tryLock(_ path: String) -> Lock {
        for _ in 0..<3 {
            var fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            if fd < 0 && errno == ENOENT {
                // Only the first claim in a WAL directory makes `.wal-e/ahead`, not every poll.
                try? POSIX.makeDirectories(POSIX.dirname(path), mode: 0o700)
                fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
            }
            guard fd >= 0 else { return .unavailable }
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                let busy = errno == EWOULDBLOCK
                close(fd)
                return busy ? .held : .unavailable
            }
            var held = stat()
            if fstat(fd, &held) == 0, let now = POSIX.stat(path), now.st_ino == held.st_ino, now.st_dev == held.st_dev {
                return .locked(fd)
            }
            close(fd)
        }
        return .held
    }
}

extension WALPush {
    /// How a call takes part in asynchronous archiving.
    public struct Ahead: Sendable {
        /// How long a call waits for a helper archiving its segment before pushing it itself.
        public var wait: Double
        /// Starts a detached helper (`pushAhead(walDirectory:)` in a process of its own).
        public var spawn: @Sendable () -> Void

        public init(wait: Double = 120, spawn: @escaping @Sendable () -> Void) {
            self.wait = wait
            self.spawn = spawn
        }
    }

    /// PostgreSQL's call for `own` under asynchronous archiving: waits out a helper archiving it,
    /// trusts the marker that helper left, else starts a helper for the rest of the backlog and
    /// pushes `own` in-band.
    func runAhead(_ own: OpenedFile, markers: PushedMarkers, _ ahead: Ahead) async throws -> Outcome {
        let claims = AheadClaims(walDirectory: markers.walDirectory)
        markers.sweep()
        claims.sweep()
        let (claim, waited) = claims.claim(own.name, timeout: ahead.wait)
        defer { claim?.release() }
        if waited && markers.matches(own.name, own.stat, prefix: prefix.raw) {
            markers.remove(own.name)
            logger.info(
                "WAL file was archived ahead by an earlier wal-push", detail: "\"\(own.path)\" is in \(prefix.raw) (pushed by the asynchronous helper); nothing uploaded.",
                ["action": "push-wal", "seg": own.name, "state": "skip"])
            return .alreadyArchived
        }
        if waited && claim == nil {
            logger.warning(
                "the asynchronous helper has held \(own.name) for \(Int(ahead.wait)) s; archiving it here",
                hint: "a helper that stays stuck is stopped by its own transfer timeouts; see its log")
        }
        // The listing first: with no backlog (the steady state) no helper lock is touched.
        if !readyNeighbours(of: own.path, limit: 1, skipping: markers).isEmpty && !claims.helperRunning {
            ahead.spawn()
        }
        return try await push(own)
    }

    /// The helper (`wal-push-ahead`): archives every `.ready` segment of `walDirectory` without a
    /// marker, oldest first, `streams` at a time, each claimed while it is pushed and marked once
    /// it is durable; scans again until a pass finds nothing left. Returns at once when another
    /// helper is running. Returns how many segments it archived.
    @discardableResult
    public func pushAhead(walDirectory dir: String) async -> Int {
        let claims = AheadClaims(walDirectory: dir)
        guard let lock = claims.lockHelper() else { return 0 }
        defer { close(lock) }
        let markers = PushedMarkers(walDirectory: dir)
        // Pushed by this helper: not pushed again when PostgreSQL's call has used the marker
        // but not yet renamed the `.ready` file.
        var archived: Set<String> = []
        while true {
            let names = readySegments(in: dir, limit: Int.max, skipping: markers).filter { !archived.contains($0) }
            let pushed = await withTaskGroup(of: String?.self) { group in
                var queue = names[...]
                var inFlight = 0
                var done: [String] = []
                while true {
                    while inFlight < streams, let name = queue.popFirst() {
                        guard let claim = claims.tryClaim(name) else { continue }
                        if markers.exists(name) {
                            claim.release()
                            continue
                        }
                        inFlight += 1
                        group.addTask {
                            defer { claim.release() }
                            guard await pushNeighbour(directory: dir, name: name) != nil else { return nil }
                            markers.record(name, prefix: prefix.raw)  // before the claim is released
                            return name
                        }
                    }
                    guard let result = await group.next() else { break }
                    inFlight -= 1
                    if let name = result { done.append(name) }
                }
                return done
            }
            archived.formUnion(pushed)
            if pushed.isEmpty { break }
        }
        logger.info("asynchronous archiving: \(archived.count) segments pushed ahead of PostgreSQL", ["action": "push-wal-ahead"])
        return archived.count
    }
}
