#if canImport(Glibc)
import Glibc
#endif

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
