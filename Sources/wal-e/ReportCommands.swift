import ArgumentParser
import WALECodec
import WALECore
import WALEEngine
import WALEPostgres
import WALEStorage

struct VerifyCommand: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "verify", abstract: "Prove that a stored backup restores, without writing a data directory.",
        discussion: """
            Reads every object a restore of the backup would read, once, and writes nothing: the sentinel (its checksum \
            and its agreement with the objects found), extended_version.txt, every tar partition (codec checksums, gpg, a \
            well-formed tar, each file's size and checksum against the backup manifest, no file the manifest does not \
            list, global/pg_control present) and the WAL from the backup's start to its stop segment (present, \
            decoding, a valid page header). WAL-E's own backups have no manifest: they get every other check, and the \
            report says that file checksums were not available. Every problem is named with its object's key. Exit \
            status: 0 when the backup is intact, 65 when an object is damaged, 1 when one is missing.
            """)
    @OptionGroup var global: GlobalOptions
    @Option(name: [.customShort("p"), .customLong("pool-size")], help: "Partitions and WAL segments checked in parallel.")
    var poolSize: Int = 4
    @Flag(name: .customLong("all"), help: "Verify every backup under the prefix.")
    var all = false
    @Flag(name: .customLong("json"), help: "Print a JSON array with one report per backup instead of text.")
    var json = false
    @OptionGroup var progressOptions: ProgressOptions
    @Option(name: .customLong("prometheus"), help: "Also write the outcome as node_exporter textfile metrics to this file (wal_e_verify_*).")
    var prometheus: String?
    @Argument(help: "A backup name or LATEST (the default).") var backupName: String?

    func validate() throws {
        guard poolSize >= 1 else { throw ValidationError("--pool-size must be at least 1") }
        if all && backupName != nil { throw ValidationError("give a backup name or --all, not both") }
    }

    func execute() async throws -> WALEExitCode {
        let ctx = try Context.make(global.flags, loggerName: "wal_e.operator.verify")
        let prefix = ctx.config.prefix
        let catalog = BackupCatalog(store: ctx.store, prefix: prefix)
        let backups = try await catalog.list()
        var targets: [BackupInfo]
        if all {
            targets = backups.sorted { $0.name < $1.name }
        } else if let found = try catalog.find(backupName ?? "LATEST", in: backups) {
            targets = [found]
        } else if let q = backupName, let name = BackupName(q),
            try await !ctx.store.list(prefix: name.directory(prefix)).isEmpty
        {
            // Objects without a sentinel: checked all the same, the sentinel reported missing.
            targets = [BackupInfo(name: name, sentinelKey: name.sentinelKey(prefix), lastModified: "", lastModifiedEpoch: 0, sentinel: nil)]
        } else {
            targets = []
        }
        if targets.isEmpty {
            throw WALEError(
                .user, "no backup to verify", detail: backupName.map { "no backup named \($0) under \(prefix.raw)" } ?? "no complete backup under \(prefix.raw)",
                hint: "backup-list shows what the prefix holds")
        }
        let reader = BackupReader(store: ctx.store, prefix: prefix, logger: ctx.logger, retry: ctx.retry)
        let verify = BackupVerify(reader: reader, preferred: ctx.compression)
        var reports: [BackupVerify.Report] = []
        var verified: [BackupName: Bool] = [:]
        for b in targets {
            let progress = Progress(label: "verify \(b.name)")
            progress.start(show: progressOptions.show(terse: ctx.config.terse))
            let r = try await verify.run(b, poolSize: poolSize, progress: progress, verified: verified)
            progress.finish()
            reports.append(r)
            verified[r.name] = r.problems.isEmpty
            for p in r.problems { ctx.logger.error("\(r.name): \(p.kind.rawValue) object \(p.key)", detail: p.message) }
            let what = "\(r.partitions) partitions, \(r.files) files, \(r.bytes) bytes"
                + (r.fileChecksums ? "" : " (a WAL-E backup: no manifest, file checksums not available)")
                + (r.online ? ", \(r.walSegments) WAL segments" : ", offline (needs no WAL)")
                + "; " + progress.summary(stored: false)
            if r.problems.isEmpty {
                ctx.logger.info("verified \(r.name): it restores", detail: what, ["action": "verify"])
            } else {
                ctx.logger.error("\(r.name) does not restore: \(r.problems.count) problems", detail: what)
            }
            if !json {
                writeStdout("\(r.name)\t\(r.problems.isEmpty ? "ok" : "FAILED")\t\(what)\n")
                for p in r.problems { writeStdout("  \(p.kind.rawValue)\t\(p.key)\t\(p.message)\n") }
            }
        }
        if json { writeStdout(JSON.array(reports.map { $0.json() }).serialized() + "\n") }
        let ok = reports.allSatisfy { $0.problems.isEmpty }
        if let prometheus { try writeMetricsFile(prometheus, Self.metrics(prefix: prefix.raw, ok: ok, previous: prometheus)) }
        if reports.contains(where: { $0.exitCode == .corruptObject }) { return .corruptObject }
        return ok ? .success : .userError
    }

    /// The outcome as metrics; the last success is carried forward from the previous file when
    /// this run failed, so an alert can say since when backups have not verified.
    static func metrics(prefix: String, ok: Bool, previous path: String) -> String {
        let now = POSIX.now()
        let lastSuccess = ok ? now : POSIX.readSmallFile(path).flatMap { PrometheusText.value(of: "wal_e_verify_last_success_timestamp_seconds", in: $0) }
        var p = PrometheusText(labels: [("prefix", prefix)])
        p.gauge("wal_e_verify_last_run_timestamp_seconds", "When wal-e verify last ran.", now)
        p.gauge("wal_e_verify_last_ok", "1 when the last wal-e verify found every backup it checked intact.", ok ? 1 : 0)
        if let lastSuccess {
            p.gauge("wal_e_verify_last_success_timestamp_seconds", "When wal-e verify last found every backup it checked intact.", lastSuccess)
        }
        return p.render()
    }
}

struct WALVerifyCommand: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "wal-verify", abstract: "Find the gaps in the WAL archive and which backups they cut off.",
        discussion: """
            On every timeline (its history files read), from the oldest backup's start to the newest archived segment: \
            the segments that are missing (a gap makes every later point in time unreachable from the backups before \
            it), for each backup whether it can be recovered to the end of the archive, and the age of the newest \
            archived segment. --integrity also downloads every segment in those ranges and checks its codec, size and \
            page header. Exit status: 0 when nothing is missing, 1 when a segment or history file is missing, 65 when \
            one is damaged.
            """)
    @OptionGroup var global: GlobalOptions
    @Flag(name: .customLong("json"), help: "Print the report as a JSON object instead of text.")
    var json = false
    @Flag(name: .customLong("integrity"), help: "Also download every segment and check that it decodes into a valid WAL segment.")
    var integrity = false
    @Option(name: [.customShort("p"), .customLong("pool-size")], help: "Segments checked in parallel with --integrity.")
    var poolSize: Int = 8

    func validate() throws {
        guard poolSize >= 1 else { throw ValidationError("--pool-size must be at least 1") }
    }

    func execute() async throws -> WALEExitCode {
        let ctx = try Context.make(global.flags, loggerName: "wal_e.operator.verify")
        let v = WALVerify(store: ctx.store, prefix: ctx.config.prefix, logger: ctx.logger, retry: ctx.retry, preferred: ctx.compression)
        let r = try await v.run(integrity: integrity, poolSize: poolSize)
        writeStdout(json ? r.json().serialized() + "\n" : r.text())
        return r.exitCode
    }
}

struct StatusCommand: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show the archive on one screen: backups, WAL, gaps, and how old each is.",
        discussion: """
            Backups: how many, the newest and oldest with their age and size, the permanent ones. WAL: the newest \
            segment and its age (the recovery point objective as it stands), the gaps on each timeline and whether each \
            backup can be recovered to the end of the archive (wal-verify's report, without downloading segments). \
            --prometheus FILE also writes the node_exporter textfile-collector format to FILE, atomically (metrics \
            named wal_e_*, each labelled with the prefix), so that a cron line feeds monitoring with no exporter to \
            run. Exit status 0 whenever the archive could be read: status reports, wal-verify judges.
            """)
    @OptionGroup var global: GlobalOptions
    @Flag(name: .customLong("json"), help: "Print the report as a JSON object instead of text.")
    var json = false
    @Option(name: .customLong("prometheus"), help: "Also write the metrics to this file (for node_exporter's textfile collector; name it *.prom).")
    var prometheus: String?

    func execute() async throws -> WALEExitCode {
        let ctx = try Context.make(global.flags, loggerName: "wal_e.operator.status")
        let v = WALVerify(store: ctx.store, prefix: ctx.config.prefix, logger: ctx.logger, retry: ctx.retry, preferred: ctx.compression)
        let r = try await ArchiveStatus(verify: v).run()
        if let prometheus { try writeMetricsFile(prometheus, r.prometheus()) }
        writeStdout(json ? r.json().serialized() + "\n" : r.text())
        return .success
    }
}

/// Replaces `path` in one rename, so a collector never reads half a file (the temporary's name
/// does not end in .prom: node_exporter skips it).
func writeMetricsFile(_ path: String, _ text: String) throws {
    do {
        let w = try AtomicFileWriter(path: path, mode: 0o644)
        try w.write(Array(text.utf8))
        try w.commit(durable: true)
    } catch let e as WALEError {
        throw WALEError(.io, "cannot write the metrics file \(path)", detail: e.message, hint: "the directory must exist and be writable by this user")
    }
}

struct CheckCommand: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "check", abstract: "Check that the store and PostgreSQL are set up for archiving, and say how to fix what is not.",
        discussion: """
            The store, with these credentials: listing, a probe object written, read back and deleted (under \
            <prefix>/wal_e_check/, outside wal_005/ and basebackups_005/), and the clock against the store's. \
            PostgreSQL, when reachable through the libpq environment (PGHOST, PGPORT, PGUSER, ...): wal_level, \
            archive_mode, whether archive_command runs wal-e wal-push to this prefix, the archiver (running, failing, \
            the last segment it archived present in this archive), and with --switch-wal a forced segment switch \
            that must reach the archive within --archive-timeout seconds. One line per check: ok, warning or error \
            with the fix. Exit status 1 when any check is an error.
            """)
    @OptionGroup var global: GlobalOptions
    @Flag(name: .customLong("json"), help: "Print a JSON array of the checks instead of text.")
    var json = false
    @Flag(name: .customLong("switch-wal"), help: "Force a WAL segment switch and wait for the segment to reach the archive.")
    var switchWAL = false
    @Option(name: .customLong("archive-timeout"), help: "Seconds --switch-wal waits for the segment.")
    var archiveTimeout: Double = 60
    @Flag(name: .customLong("no-postgres"), help: "Check the store only.")
    var noPostgres = false

    func execute() async throws -> WALEExitCode {
        let ctx = try Context.make(global.flags, loggerName: "wal_e.operator.check")
        let check = Check(store: ctx.store, prefix: ctx.config.prefix, preferred: ctx.compression)
        var results = await check.storeChecks()
        if !noPostgres {
            do {
                let session = try await PostgresSession.connect(env: Context.environment())
                results += await check.postgresChecks(session, switchTimeout: switchWAL ? archiveTimeout : nil)
                await session.close()
            } catch {
                var r = Check.failure("postgresql", error, fix: "set PGHOST, PGPORT, PGUSER (and PGPASSWORD or ~/.pgpass) for the server that archives here, or pass --no-postgres")
                r.status = switchWAL ? .error : .warning
                results.append(r)
            }
        }
        if json {
            writeStdout(JSON.array(results.map { $0.json() }).serialized() + "\n")
        } else {
            for r in results {
                writeStdout("\(r.status.rawValue)\t\(r.name)\t\(r.detail)" + (r.status == .ok ? "" : r.fix.map { "\tfix: \($0)" } ?? "") + "\n")
            }
        }
        return results.contains { $0.status == .error } ? .userError : .success
    }
}
