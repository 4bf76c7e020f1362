#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import WALECore
import WALEEngine

/// `--dry-run` / `--confirm`, accepted before or after the delete mode.
struct DeleteFlags: ParsableArguments {
    @Flag(name: [.customShort("n"), .customLong("dry-run")], help: "Only show what would be deleted (the default).")
    var dryRun = false
    @Flag(name: .customLong("confirm"), help: "Really delete (ignored with --dry-run).")
    var confirm = false
    @Flag(name: .customLong("json"), help: "Also print the plan as a JSON object on stdout (the dry run's and the confirmed run's alike).")
    var json = false
    @Flag(inversion: .prefixedNo, help: "Show (or hide) the updating progress line of a confirmed run on stderr; shown by default on a terminal without --terse.")
    var progress: Bool?
}

protocol DeleteMode: WALECommand {
    var flags: DeleteFlags { get }
    func target() throws -> DeletionTarget
}

extension DeleteMode {
    func execute() async throws -> WALEExitCode {
        let ctx = try Context.make(global.flags, loggerName: "wal_e.main")
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let d = Delete(store: ctx.store, prefix: ctx.config.prefix, logger: ctx.logger, now: Double(ts.tv_sec))
        let confirm = flags.confirm && !flags.dryRun
        let age = try AbandonedUploads.age(env: Context.environment())
        let plan = try await d.run(try target(), confirm: confirm, showProgress: progressShown(flags.progress, terse: ctx.config.terse))
        if flags.json { writeStdout(plan.json(confirmed: confirm, prefix: ctx.config.prefix).serialized() + "\n") }
        if confirm { await AbandonedUploads.sweep(store: ctx.store, prefix: ctx.config.prefix, age: age, logger: ctx.logger) }
        return .success
    }
}

struct DeleteCommand: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete old backups and the WAL only they need (a dry run unless --confirm).",
        discussion: """
            Nothing is deleted unless --confirm is given and --dry-run is not. Never deleted: .history files, \
            permanent backups (backup-push --permanent, backup-mark) and the WAL they need, backups that may \
            still be in progress, and WAL a kept backup needs to reach consistency and roll forward along its \
            timeline and the timelines branching from it.
            """,
        subcommands: [DeleteBefore.self, DeleteRetain.self, DeleteOldVersions.self, DeleteEverything.self])
    @OptionGroup var global: GlobalOptions
    @OptionGroup var flags: DeleteFlags

    func execute() async throws -> WALEExitCode {
        throw WALEError(.user, "delete needs one of: before, retain, old-versions, everything", hint: "see wal-e delete --help")
    }
}

struct DeleteBefore: DeleteMode {
    static let configuration = CommandConfiguration(
        commandName: "before",
        abstract: "Delete backups older than a backup, a WAL segment or a time, and WAL no kept backup needs.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var flags: DeleteFlags
    @Argument(help: "A backup name, a WAL segment name, or an ISO 8601 time (UTC unless an offset is given).")
    var beforeSegmentExclusive: String

    func target() throws -> DeletionTarget {
        if BackupName(beforeSegmentExclusive) != nil || WALSegmentName(beforeSegmentExclusive) != nil {
            return .beforeName(beforeSegmentExclusive)
        }
        if let t = parseISO8601(beforeSegmentExclusive) { return .beforeTime(t) }
        throw WALEError(
            .user, "\"\(beforeSegmentExclusive)\" is neither a backup name, a WAL segment name nor a time",
            hint: "e.g. base_000000010000000000000004_00000040, 000000010000000000000004 or 2026-11-21T00:00:00Z")
    }
}

struct DeleteRetain: DeleteMode {
    static let configuration = CommandConfiguration(
        commandName: "retain", abstract: "Keep the newest N backups (by start time and position), delete older ones.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var flags: DeleteFlags
    @Option(name: .customLong("min-age"), help: "Also keep every backup younger than this (e.g. 7d, 12h, 3600).")
    var minAge: String?
    @Argument(help: "How many backups to keep (permanent ones are kept besides).") var numToRetain: Int

    func target() throws -> DeletionTarget {
        var age: Double?
        if let minAge {
            guard let a = parseDuration(minAge) else { throw WALEError(.user, "--min-age \"\(minAge)\" is not a duration like 7d or 3600") }
            age = a
        }
        return .retain(count: numToRetain, minAge: age)
    }
}

struct DeleteOldVersions: DeleteMode {
    static let configuration = CommandConfiguration(
        commandName: "old-versions", abstract: "Delete WAL-E's pre-005 layouts (basebackups_000–004, wal_000–004).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var flags: DeleteFlags
    func target() throws -> DeletionTarget { .oldVersions }
}

struct DeleteEverything: DeleteMode {
    static let configuration = CommandConfiguration(
        commandName: "everything", abstract: "Delete every backup and WAL file (permanent backups and their WAL stay).")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var flags: DeleteFlags
    func target() throws -> DeletionTarget { .everything }
}

struct BackupMarkCommand: WALECommand {
    static let configuration = CommandConfiguration(
        commandName: "backup-mark", abstract: "Mark a backup permanent (kept by every delete), or unmark it.")
    @OptionGroup var global: GlobalOptions
    @Flag(name: .customLong("unmark"), help: "Remove the permanent mark.") var unmark = false
    @Argument(help: "A backup name or LATEST.") var backupName: String

    func execute() async throws -> WALEExitCode {
        let ctx = try Context.make(global.flags, loggerName: "wal_e.main")
        try await Delete(store: ctx.store, prefix: ctx.config.prefix, logger: ctx.logger, now: 0).mark(backupName, permanent: !unmark)
        return .success
    }
}
