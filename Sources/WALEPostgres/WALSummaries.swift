#if canImport(Glibc)
import Glibc
#endif
import PostgresNIO
import WALECore
import WALEStorage

/// PostgreSQL 17+'s WAL summaries: which blocks of which relations WAL between two positions
/// touched (`summarize_wal = on`). Incremental backups read them instead of every page.
extension PostgresSession {
    /// Whether the server keeps WAL summaries (17+ with `summarize_wal = on`).
    public func summarizesWAL(server: ServerInfo) async throws -> Bool {
        guard server.versionNumber >= 170000 else { return false }
        return try await value("SELECT current_setting('summarize_wal', true)") == "on"
    }

    /// Waits until the summarizer has summarized WAL up to `lsn` on `timeline`; false on timeout.
    /// Polls every 5 ms for the first quarter second (the summarizer usually needs a few ms after
    /// pg_backup_start's checkpoint, and a 50 ms poll made every incremental wait for it), then 50 ms.
    public func waitForSummaries(upTo lsn: LSN, timeline: TimelineID, timeout: Double) async throws -> Bool {
        let began = POSIX.monotonic()
        let deadline = began + timeout
        while true {
            let r = try await query("SELECT summarized_tli::text, summarized_lsn::text FROM pg_get_wal_summarizer_state()").first
            if let t = r?[0].flatMap({ UInt32($0) }), let l = r?[1].flatMap({ LSN(parsing: $0) }), t > timeline.value || (t == timeline.value && l >= lsn) {
                return true
            }
            let now = POSIX.monotonic()
            if now > deadline { return false }
            try await Task.sleep(nanoseconds: now - began < 0.25 ? 5_000_000 : 50_000_000)
        }
    }

    /// The summaries on `timeline` overlapping [from, to), as (start, end) ranges, ascending.
    public func summaryRanges(timeline: TimelineID, from: LSN, to: LSN) async throws -> [(LSN, LSN)] {
        let rows = try await query(
            """
            SELECT start_lsn::text, end_lsn::text FROM pg_available_wal_summaries()
             WHERE tli = \(Int64(timeline.value)) AND end_lsn > \(from.description)::pg_lsn AND start_lsn < \(to.description)::pg_lsn
            """)
        return rows.compactMap { r -> (LSN, LSN)? in
            guard let s = r[0].flatMap({ LSN(parsing: $0) }), let e = r[1].flatMap({ LSN(parsing: $0) }) else { return nil }
            return (s, e)
        }.sorted { $0.0 < $1.0 }
    }

    /// Every relation fork WAL on `timeline` between `from` and `to` touched (summaries overlapping
    /// that range): tablespace, database, relfilenode, fork, smallest truncation limit, modified
    /// blocks. Aggregated by the server: one row per relation fork.
    public func summarizedChanges(
        timeline: TimelineID, from: LSN, to: LSN, _ each: (UInt32, UInt32, UInt32, UInt8, UInt32?, [UInt32]) throws -> Void
    ) async throws {
        let rows = try await query(
            """
            SELECT c.reltablespace::text, c.reldatabase::text, c.relfilenode::text, c.relforknumber::text,
                   min(c.relblocknumber) FILTER (WHERE c.is_limit_block)::text,
                   string_agg(DISTINCT c.relblocknumber::text, ',') FILTER (WHERE NOT c.is_limit_block)
              FROM pg_available_wal_summaries() s, pg_wal_summary_contents(s.tli, s.start_lsn, s.end_lsn) c
             WHERE s.tli = \(Int64(timeline.value)) AND s.end_lsn > \(from.description)::pg_lsn AND s.start_lsn < \(to.description)::pg_lsn
             GROUP BY 1, 2, 3, 4
            """)
        for r in rows {
            guard let spc = r[0].flatMap({ UInt32($0) }), let db = r[1].flatMap({ UInt32($0) }), let rel = r[2].flatMap({ UInt32($0) }),
                let fork = r[3].flatMap({ UInt8($0) })
            else { throw WALEError(.internal, "unexpected row from pg_wal_summary_contents") }
            let blocks = (r[5] ?? "").split(separator: ",").compactMap { UInt32($0) }
            try each(spc, db, rel, fork, r[4].flatMap { UInt32($0) }, blocks)
        }
    }
}
