#if canImport(Glibc)
import Glibc
#endif
import WALECore
import WALEStorage

/// The global arguments a detached child (the prefetcher, the push-ahead helper) is started with:
/// those that pick and reach the store. The environment, secrets included, is inherited, never
/// put in argv.
func childArguments(_ flags: GlobalFlags, _ ctx: Context) -> [String] {
    (flags.terse ? ["--terse"] : []) + Stores.childArguments(flags, scheme: ctx.config.prefix.scheme)
}

extension GlobalOptions {
    /// A child's settings: only the prefix its parent handed over (the scheme of a --file-prefix
    /// value picks the backend), with the parent's codec, gpg key and store account flags.
    func childFlags(prefix: String) -> GlobalFlags {
        var only = GlobalFlags(filePrefix: prefix, gpgKeyID: gpgKeyID, terse: terse, compression: compression)
        only.awsAccessKeyID = awsAccessKeyID
        only.awsInstanceProfile = awsInstanceProfile
        only.wabsAccountName = wabsAccountName
        return only
    }
}

/// Starts `/proc/self/exe args...` detached (new session, stdio on /dev/null) and does not wait:
/// the background prefetcher outlives the wal-fetch that PostgreSQL is waiting for.
func spawnDetached(_ args: [String]) {
    var attr = posix_spawnattr_t()
    var actions = posix_spawn_file_actions_t()
    posix_spawnattr_init(&attr)
    posix_spawn_file_actions_init(&actions)
    defer {
        posix_spawnattr_destroy(&attr)
        posix_spawn_file_actions_destroy(&actions)
    }
    let setsid: Int16 = 0x80  // POSIX_SPAWN_SETSID (glibc ≥ 2.26)
    posix_spawnattr_setflags(&attr, setsid)
    for fd: Int32 in 0...2 {
        posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0)
    }
    let exe = "/proc/self/exe"
    let argv: [UnsafeMutablePointer<CChar>?] = ([exe] + args).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var pid = pid_t()
    _ = posix_spawn(&pid, exe, &actions, &attr, argv, environ)
}
