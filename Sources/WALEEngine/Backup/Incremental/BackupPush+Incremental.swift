import WALECore
import WALEPostgres
import WALEStorage

/// `backup-push --incremental`: the parent, how changes are found, and why a full backup is taken
/// instead when they cannot be (docs/incremental.md).
extension BackupPush {
    public enum IncrementalRequest: Sendable {
        /// A full backup.
        case off
        /// An incremental when possible; otherwise a full one, saying why.
        case preferred
        /// An incremental, or an error saying why not.
        case required
    }

    /// What an incremental backup is built on.
    struct IncrementalBasis {
        var parent: BackupName
        var parentStartLSN: LSN
        var depth: Int
        var mode: IncrementalSource.Mode
        var parentFiles: [String: ManifestEntry]
    }

    /// The parent an incremental would build on, with its files: found in storage while
    /// `pg_backup_start`'s checkpoint runs (the two do not depend on each other, and the lookup's
    /// listing and reads are round trips to the store). nil when no incremental was asked for.
    func lookUpParent(server: ServerInfo, options: Options) async -> Result<ParentLookup, any Error>? {
        guard options.incremental != .off else { return nil }
        do {
            return .success(try await findParent(server: server, options: options))
        } catch {
            return .failure(error)
        }
    }

    /// Decides after `pg_backup_start` whether this backup can be incremental, from the parent
    /// `lookUpParent` found. Returns nil (a full backup) with the reason logged, or throws when an
    /// incremental was required.
    func incrementalBasis(
        _ session: PostgresSession, server: ServerInfo, start: BackupStart, options: Options, parent: Result<ParentLookup, any Error>?
    ) async throws -> IncrementalBasis? {
        guard let parent else { return nil }  // nil: no incremental was asked for
        do {
            return try await findBasis(session, server: server, start: start, options: options, parent: try parent.get())
        } catch let why as NoIncremental {
            if options.incremental == .required {
                throw WALEError(.user, "cannot take an incremental backup: \(why.reason)", hint: why.hint ?? "leave out --require-incremental to take a full backup instead")
            }
            logger.warning("taking a full backup instead of an incremental: \(why.reason)", hint: why.hint)
            return nil
        }
    }

    struct NoIncremental: Error {
        var reason: String
        var hint: String?
    }

    struct ParentLookup: Sendable {
        var parent: BackupInfo
        var extra: Sentinel.Extra
        var view: [ClusterFile]
        var depth: Int
    }

    /// The newest backup of this cluster (or `--from`) that an incremental can build on, as far as
    /// storage alone tells; what depends on this backup's start is checked by findBasis.
    private func findParent(server: ServerInfo, options: Options) async throws -> ParentLookup {
        let catalog = BackupCatalog(store: store, prefix: prefix)
        let all = try await catalog.list()
        let major = server.versionNumber / 10000
        var chosen: (BackupInfo, Sentinel.Extra)?
        if let from = options.incrementalFrom {
            let b = try catalog.resolve(from, in: all)
            guard let x = try await catalog.loadSentinel(b).extra else {
                throw NoIncremental(reason: "\(b.name) was taken by WAL-E and has no manifest to compare with")
            }
            chosen = (b, x)
        } else {
            // The newest by start position among ours of this cluster.
            for b in all.sorted(by: { $0.name.segment.logSeg > $1.name.segment.logSeg }) {
                guard let x = try? await catalog.loadSentinel(b).extra, x.systemIdentifier == server.systemIdentifier else { continue }
                chosen = (b, x)
                break
            }
        }
        guard let (parent, x) = chosen else {
            throw NoIncremental(reason: "there is no earlier backup of this cluster (system identifier \(server.systemIdentifier)) to build on")
        }
        guard x.systemIdentifier == server.systemIdentifier, x.postgresVersionNumber / 10000 == major else {
            throw NoIncremental(
                reason: "\(parent.name) is of another cluster or PostgreSQL version (system identifier \(x.systemIdentifier), version \(x.postgresVersionNumber))")
        }
        let depth = (x.incremental?.depth ?? 0) + 1
        if depth > options.maxChain {
            throw NoIncremental(
                reason: "\(parent.name) already ends a chain of \(depth - 1) incremental backups (--max-chain \(options.maxChain))",
                hint: "a full backup starts a new chain")
        }
        let reader = BackupReader(store: store, prefix: prefix, logger: logger, retry: RetryPolicy(attempts: 1))
        let parentView: [ClusterFile]?
        do {
            parentView = try await reader.clusterView(parent.name)
        } catch let e as WALEError where e.kind != .io {
            // An encrypted archive whose private key is not on this host (native encryption's
            // point), or a damaged manifest: the parent cannot be compared with.
            throw NoIncremental(
                reason: "the manifest of \(parent.name) cannot be read here: \(e.message)",
                hint: "with encryption, incremental backups need the key that decrypts the archive on the host that takes them")
        }
        guard let view = parentView else {
            throw NoIncremental(reason: "\(parent.name) has no manifest to compare with")
        }
        return ParentLookup(parent: parent, extra: x, view: view, depth: depth)
    }

    private func findBasis(
        _ session: PostgresSession, server: ServerInfo, start: BackupStart, options: Options, parent found: ParentLookup
    ) async throws -> IncrementalBasis {
        let (parent, x, view, depth) = (found.parent, found.extra, found.view, found.depth)
        let major = server.versionNumber / 10000
        guard let parentStart = LSN(parsing: x.startLSN), parentStart < start.lsn else {
            throw NoIncremental(
                reason: "\(parent.name) does not start before this backup",
                hint: server.inRecovery
                    ? "a standby's backup starts at its last restartpoint, and it makes one only when it replays a checkpoint: run CHECKPOINT on the primary first"
                    : nil)
        }
        guard x.timeline == start.timeline.value else {
            throw NoIncremental(
                reason: "\(parent.name) is on timeline \(x.timeline) and this backup on \(start.timeline.value) (a promotion in between)",
                hint: "the first backup on a new timeline is a full one")
        }
        let files = Dictionary(view.map { ($0.entry.path, $0.entry) }, uniquingKeysWith: { a, _ in a })

        let mode: IncrementalSource.Mode
        if server.versionNumber >= 170000 {
            guard try await session.summarizesWAL(server: server) else {
                throw NoIncremental(
                    reason: "summarize_wal is off, so PostgreSQL \(major) keeps no WAL summaries to find the changed blocks",
                    hint: "ALTER SYSTEM SET summarize_wal = on; SELECT pg_reload_conf(); the next backup after that is a full one, then incrementals")
            }
            guard try await session.waitForSummaries(upTo: start.lsn, timeline: start.timeline, timeout: options.summaryTimeout) else {
                throw NoIncremental(
                    reason: "WAL summarization did not reach the backup's start (\(start.lsn)) within \(Int(options.summaryTimeout)) s",
                    hint: "see pg_get_wal_summarizer_state() and the server log")
            }
            let ranges = try await session.summaryRanges(timeline: start.timeline, from: parentStart, to: start.lsn)
            var reached = parentStart
            for (s, e) in ranges where s <= reached { reached = max(reached, e) }
            guard ranges.first.map({ $0.0 <= parentStart }) ?? false, reached >= start.lsn else {
                throw NoIncremental(
                    reason: "the WAL summaries on timeline \(start.timeline.value) do not cover \(parentStart) to \(start.lsn), since \(parent.name) started"
                        + " (summaries found: " + (ranges.isEmpty ? "none" : ranges.map { "\($0.0)–\($0.1)" }.joined(separator: ", ")) + ")",
                    hint: "summaries are kept for wal_summary_keep_time and start when summarize_wal is turned on; a full backup now starts a new chain")
            }
            var changes = BlockChanges()
            try await session.summarizedChanges(timeline: start.timeline, from: parentStart, to: start.lsn) { spc, db, rel, fork, limit, blocks in
                changes.add(.init(tablespace: spc, database: db, relfilenode: rel, fork: fork), limit: limit, blocks: blocks)
            }
            mode = .block(changes)
        } else {
            guard !view.contains(where: { $0.entry.mtime == nil }), let t = parseISO8601(x.startTime) else {
                throw NoIncremental(reason: "\(parent.name)'s manifest has no modification times (taken by an older wal-e)")
            }
            mode = .file(parentStart: t)
        }
        return IncrementalBasis(parent: parent.name, parentStartLSN: parentStart, depth: depth, mode: mode, parentFiles: files)
    }
}
