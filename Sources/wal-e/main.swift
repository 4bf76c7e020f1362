#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import CWALESupport
import WALECore
import WALEEngine
import WALEStorage

/// Parses, runs, and turns every outcome into one of the exit codes in `WALEExitCode`.
func runMain() async -> Int32 {
    // archive_command's and restore_command's plain forms: no ArgumentParser (see HotCommand).
    switch HotCommand.parse(Array(CommandLine.arguments.dropFirst())) {
    case .walPush(let terse, let segment):
        return await perform(WALPushRun(flags: GlobalFlags(terse: terse), segment: segment).execute, fetch: nil)
    case .walFetch(let terse, let segment, let destination):
        let fetch = WALFetchRun(flags: GlobalFlags(terse: terse), segment: segment, destination: destination)
        return await perform(fetch.execute, fetch: fetch)
    case nil:
        break
    }
    let command: ParsableCommand
    do {
        command = try Root.parseAsRoot()
    } catch {
        let code = report(parseError: error)
        // A restore_command that does not parse is a configuration error: PostgreSQL must stop,
        // not read "not in the archive" and end recovery.
        return code != 0 && CommandLine.arguments.dropFirst().contains("wal-fetch") ? RestoreCommandStatus.usageError : code
    }
    guard let cmd = command as? any WALECommand else {
        if command is Root {
            writeStderr(Root.helpMessage() + "\n")
            return WALEExitCode.noSubcommand.rawValue
        }
        // `--help`, `help SUBCOMMAND`: ArgumentParser's own help command prints to stdout.
        var other = command
        do {
            try other.run()
            return 0
        } catch {
            return report(parseError: error)
        }
    }
    return await perform(cmd.execute, fetch: (cmd as? WALFetchCommand)?.run)
}

/// Runs a command and turns its outcome into its exit status (wal-fetch's by its own contract).
func perform(_ execute: () async throws -> WALEExitCode, fetch: WALFetchRun?) async -> Int32 {
    armFileWatchdog(fetch)
    do {
        return try await execute().rawValue
    } catch let e as WALEError {
        if let fetch { return fetch.report(failure: e) }
        let logger = Context.bootstrapLogger(terse: false)
        logger.log(e.kind == .internal ? .critical : .error, e.message, detail: e.detail, hint: e.hint)
        return e.exitCode.rawValue
    } catch {
        if let fetch { return fetch.report(failure: error) }
        Context.bootstrapLogger(terse: false).log(
            .critical, "An unprocessed exception has avoided all error handling", detail: "\(error)")
        return WALEExitCode.usage.rawValue
    }
}

/// A file:// operation stuck on a hung file system ends the command as a storage failure would
/// (wal-fetch: the status its contract gives), since the blocked thread cannot be cancelled.
func armFileWatchdog(_ fetch: WALFetchRun?) {
    // The HTTP stores' own reading of WALE_STALL_*; a malformed value is reported by them, and
    // file:// keeps the defaults.
    let limits = (try? TransferLimits.resolve(env: Context.environment(), timeoutVariable: "WALE_STALL_TIMEOUT")) ?? TransferLimits()
    FileWatchdog.shared.arm(stallSeconds: limits.stallSeconds, minRate: limits.minRate) { e in
        if let fetch { exit(fetch.report(failure: e)) }
        Context.bootstrapLogger(terse: false).log(.error, e.message, detail: e.detail, hint: e.hint)
        exit(e.exitCode.rawValue)
    }
}

/// Help goes to stdout with status 0; usage errors to stderr with status 2 (as argparse does).
func report(parseError error: Error) -> Int32 {
    if Root.exitCode(for: error) == .success {
        writeStdout(Root.fullMessage(for: error) + "\n")
        return 0
    }
    writeStderr(Root.fullMessage(for: error) + "\n")
    return WALEExitCode.usage.rawValue
}

// PostgreSQL ends its archive and restore commands with SIGQUIT on an immediate shutdown. Swift's
// runtime takes SIGQUIT for a crash: it printed a backtrace into the server log and took seconds
// doing it, holding up the shutdown and the restart after it (PostgreSQL's 045_archive_restartpoint
// test on 15). Exit at once instead, quietly, with 128 + 3 as a shell reports the signal.
signal(SIGQUIT) { _ in _exit(131) }

// Chunks of 1 MiB are allocated and freed all the time; by default glibc serves each from a fresh
// mmap (page faults, zeroing, munmap). Keep them on the heap instead.
wale_tune_malloc()

// Every command runs on wal-e's own thread pool (BlockingExecutor: blocking pipelines must not
// hold the cooperative pool's one thread per core); child tasks inherit the preference.
exit(await withTaskExecutorPreference(BlockingExecutor.shared) { await runMain() })
