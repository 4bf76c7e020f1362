import WALECodec
import WALECore
import WALEPostgres
import WALEStorage

/// `check` (pgBackRest's and Barman's name): is this archive set up to work? The store with these
/// credentials (list; write, read back and delete a probe object outside `wal_005/` and
/// `basebackups_005/`; the clock against the store's), and, when PostgreSQL is reachable through
/// the libpq environment, the server's side (wal_level, archive_mode, whether archive_command runs
/// wal-e's wal-push to this prefix, the archiver's state, and optionally a forced segment switch
/// that must reach the archive). Each check says ok, warning or error, with the fix.
public struct Check: Sendable {
    public struct Result: Sendable {
        public enum Status: String, Sendable { case ok, warning, error }
        public var name: String
        public var status: Status
        public var detail: String
        public var fix: String?

        public func json() -> JSON {
            .object([("check", .string(name)), ("status", .string(status.rawValue)), ("detail", .string(detail)), ("fix", fix.map { .string($0) } ?? .null)])
        }
    }

    public let store: any ObjectStore
    public let prefix: StoragePrefix
    public let preferred: Compression

    public init(store: any ObjectStore, prefix: StoragePrefix, preferred: Compression) {
        self.store = store
        self.prefix = prefix
        self.preferred = preferred
    }

    public static func failure(_ name: String, _ e: Error, fix: String? = nil) -> Result {
        let w = e as? WALEError
        return Result(
            name: name, status: .error, detail: w.map { $0.message + ($0.detail.map { ": " + $0 } ?? "") } ?? "\(e)", fix: fix ?? w?.hint)
    }

    /// The store: listing, a probe written, read back and deleted, and the clock.
    public func storeChecks() async -> [Result] {
        var out: [Result] = []
        let dir = prefix.pathPrefix + "wal_e_check/"
        do {
            _ = try await store.list(prefix: dir)
            out.append(Result(name: "store listing", status: .ok, detail: "listed \(prefix.url(forKey: dir))"))
        } catch {
            out.append(Self.failure("store listing", error, fix: "check the prefix, the credentials and that the bucket or container exists"))
            return out
        }
        let key = dir + "probe-\(POSIX.uniqueSuffix())"
        let probe = Array("wal-e check probe \(key)\n".utf8)
        let before = POSIX.now()
        do {
            _ = try await store.write(key, from: BytesSource(probe), options: WriteOptions())
        } catch {
            out.append(Self.failure("store write", error, fix: (error as? WALEError)?.hint ?? "the credentials need the right to create objects under the prefix"))
            return out
        }
        let after = POSIX.now()
        out.append(Result(name: "store write", status: .ok, detail: "wrote \(prefix.url(forKey: key))"))
        do {
            let back = try await store.read(key) { try await $0.collect(limit: 1 << 20) }
            out.append(
                back == probe
                    ? Result(name: "store read", status: .ok, detail: "read the probe back unchanged")
                    : Result(name: "store read", status: .error, detail: "the probe read back differs from what was written", fix: "the store or a proxy in front of it alters objects"))
            if let info = try await store.info(key), info.lastModified > 0 {
                // The store stamps the object between our two clock readings; its times have
                // one-second resolution.
                let skew = info.lastModified < before - 1 ? info.lastModified - before : info.lastModified > after + 1 ? info.lastModified - after : 0
                out.append(
                    abs(skew) <= 60
                        ? Result(name: "clock", status: .ok, detail: "within a minute of the store's (\(Int(skew)) s)")
                        : Result(
                            name: "clock", status: .warning, detail: "\(Int(skew)) s off the store's clock",
                            fix: "run NTP (chrony, systemd-timesyncd): request signatures fail beyond 15 minutes, and ages and retention are computed from times"))
            }
        } catch {
            out.append(Self.failure("store read", error))
        }
        do {
            try await store.delete([key])
            out.append(Result(name: "store delete", status: .ok, detail: "deleted the probe"))
        } catch {
            out.append(Self.failure("store delete", error, fix: "delete and retention need the right to delete objects under the prefix"))
        }
        return out
    }

    /// PostgreSQL's side, through `session`. `switchTimeout`: force a segment switch and wait
    /// this long for it to reach the archive (nil: do not).
    public func postgresChecks(_ session: PostgresSession, switchTimeout: Double?) async -> [Result] {
        var out: [Result] = []
        // The switch first, so that the archiver's state below includes it.
        var switched: Result?
        if let timeout = switchTimeout {
            let standby = (try? await session.value("SELECT pg_is_in_recovery()::text")) == "true"
            switched = await switchAndWait(session, timeout: timeout, inRecovery: standby)
        }
        let row: [String?]
        do {
            guard
                let r = try await session.query(
                    """
                    SELECT current_setting('wal_level'), current_setting('archive_mode'), current_setting('archive_command'),
                           coalesce(current_setting('archive_library', true), ''), last_archived_wal, last_archived_time::text,
                           last_failed_wal, last_failed_time::text, failed_count::text,
                           (last_failed_time IS NOT NULL AND last_failed_time > coalesce(last_archived_time, '-infinity'))::text,
                           pg_is_in_recovery()::text,
                           (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'archiver')::text
                    FROM pg_stat_archiver
                    """
                ).first
            else { return [Result(name: "postgresql", status: .error, detail: "pg_stat_archiver returned no row")] }
            row = r
        } catch {
            return [Self.failure("postgresql", error, fix: "the check needs a superuser, or a role with pg_read_all_settings and pg_monitor")]
        }
        let walLevel = row[0] ?? "", mode = row[1] ?? "", command = row[2] ?? "", library = row[3] ?? ""
        let inRecovery = row[10] == "true"
        out.append(
            walLevel == "replica" || walLevel == "logical"
                ? Result(name: "wal_level", status: .ok, detail: walLevel)
                : Result(name: "wal_level", status: .error, detail: "wal_level = \(walLevel): WAL cannot be archived or restored from", fix: "set wal_level = replica and restart PostgreSQL"))
        let archiving = mode == "always" || (mode == "on" && !inRecovery)
        out.append(
            archiving
                ? Result(name: "archive_mode", status: .ok, detail: mode)
                : mode == "on"
                    ? Result(name: "archive_mode", status: .warning, detail: "archive_mode = on on a standby: the primary archives", fix: "archive_mode = always archives on the standby too")
                    : Result(name: "archive_mode", status: .error, detail: "archive_mode = \(mode): nothing is archived", fix: "set archive_mode = on and restart PostgreSQL"))
        if !library.isEmpty && command.isEmpty {
            out.append(Result(name: "archive_command", status: .error, detail: "archive_library = \(library) archives, not a command", fix: "set archive_library = '' and archive_command = 'wal-e wal-push %p'"))
        } else if !command.contains("wal-push") || !command.contains("%p") {
            out.append(
                Result(
                    name: "archive_command", status: .error, detail: "archive_command = '\(command)' does not run wal-e wal-push %p",
                    fix: "archive_command = 'envdir /etc/wal-e.d/env wal-e wal-push %p' (or with --\(prefix.scheme.rawValue)-prefix \(prefix.raw))"))
        } else if Self.names(prefix.raw, in: command) {
            out.append(Result(name: "archive_command", status: .ok, detail: "runs wal-push to \(prefix.raw)"))
        } else if command.contains("://") {
            out.append(
                Result(
                    name: "archive_command", status: .error, detail: "archive_command = '\(command)' archives to another prefix than \(prefix.raw)",
                    fix: "archive to the prefix you back up and restore from"))
        } else {
            out.append(
                Result(
                    name: "archive_command", status: .warning, detail: "runs wal-push, with the prefix from its environment (envdir): not comparable here",
                    fix: "the archiver check below shows whether its segments arrive in \(prefix.raw)"))
        }

        if archiving {
            if row[11] == "0" {
                out.append(Result(name: "archiver", status: .error, detail: "no archiver process is running", fix: "restart PostgreSQL; check its log for why the archiver exited"))
            } else if row[9] == "true" {
                out.append(
                    Result(
                        name: "archiver", status: .error,
                        detail: "archive_command is failing: last failure \(row[6] ?? "?") at \(row[7] ?? "?") (\(row[8] ?? "?") failures), after the last success \(row[4] ?? "none")",
                        fix: "PostgreSQL's log has wal-push's error; WAL piles up in pg_wal until it succeeds"))
            } else if let last = row[4] {
                out.append(Result(name: "archiver", status: .ok, detail: "last archived \(last) at \(row[5] ?? "?"); \(row[8] ?? "0") failures since the statistics were reset"))
                // The last segment PostgreSQL archived should be in this archive.
                if WALSegmentName(last) != nil {
                    let downloader = WALDownloader(store: store, prefix: prefix, preferred: preferred)
                    if let key = try? await downloader.locate(last) {
                        out.append(Result(name: "archived segment", status: .ok, detail: "\(last) is in the archive (\(prefix.url(forKey: key)))"))
                    } else {
                        out.append(
                            Result(
                                name: "archived segment", status: .error, detail: "\(last), archived by PostgreSQL, is not in \(prefix.raw)",
                                fix: "archive_command archives somewhere else: point it at this prefix"))
                    }
                }
            } else {
                out.append(Result(name: "archiver", status: .ok, detail: "nothing archived yet, no failure"))
            }
        }

        if let switched { out.append(switched) }
        return out
    }

    /// Whether `command` names exactly this prefix (with or without a trailing slash): followed
    /// by the end, a blank or a quote, so `.../archive` does not match `.../archive-other` or
    /// `.../archive/sub`.
    static func names(_ prefix: String, in command: String) -> Bool {
        let bare = prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix
        var rest = command[...]
        while let r = rest.range(of: bare) {
            var after = rest[r.upperBound...]
            if after.first == "/" { after = after.dropFirst() }
            if after.first.map({ $0 == " " || $0 == "\t" || $0 == "'" || $0 == "\"" }) ?? true { return true }
            rest = rest[r.upperBound...]
        }
        return false
    }

    /// Forces a segment switch and waits for the finished segment to appear in the archive.
    func switchAndWait(_ session: PostgresSession, timeout: Double, inRecovery: Bool) async -> Result {
        guard !inRecovery else {
            return Result(name: "switch-wal", status: .warning, detail: "a standby cannot switch WAL segments", fix: "run the check with --switch-wal on the primary")
        }
        do {
            guard let name = try await session.value("SELECT pg_walfile_name(pg_switch_wal())") else {
                return Result(name: "switch-wal", status: .error, detail: "pg_switch_wal returned nothing")
            }
            let downloader = WALDownloader(store: store, prefix: prefix, preferred: preferred)
            let started = POSIX.monotonic()
            while POSIX.monotonic() - started < timeout {
                if let key = try await downloader.locate(name) {
                    let arrived = POSIX.monotonic() - started
                    // The archiver reports the segment in pg_stat_archiver only after archive_command
                    // has returned: wait (a few seconds at most) so the archiver check reads it.
                    let reported = POSIX.monotonic()
                    while POSIX.monotonic() - reported < min(10, timeout),
                        (try await session.value("SELECT (coalesce(last_archived_wal, '') >= '\(name)')::text FROM pg_stat_archiver")) != "true"
                    {
                        try await Task.sleep(nanoseconds: 100_000_000)
                    }
                    return Result(name: "switch-wal", status: .ok, detail: String(format: "%@ reached the archive in %.1f s (%@)", name, arrived, prefix.url(forKey: key)))
                }
                try await Task.sleep(nanoseconds: 200_000_000)
            }
            return Result(
                name: "switch-wal", status: .error, detail: "\(name) did not reach \(prefix.raw) within \(Int(timeout)) s",
                fix: "archive_command fails or archives elsewhere: see PostgreSQL's log and the archiver check")
        } catch {
            return Self.failure("switch-wal", error)
        }
    }
}
