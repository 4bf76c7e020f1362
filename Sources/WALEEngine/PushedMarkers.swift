#if canImport(Glibc)
import Glibc
#endif
import WALECore
import WALEStorage

/// Segments a wal-push pool archived ahead of PostgreSQL's own call for them:
/// `<pg_wal>/.wal-e/pushed/<segment>`, holding the file's identity (device, inode, size,
/// modification time) and the prefix it went to. Their `.ready` files are left alone, so
/// PostgreSQL still calls `archive_command` for each and counts it in `pg_stat_archiver`; that
/// call finds the marker matching the file and succeeds at once, without a store request (as
/// pgBackRest's asynchronous archiving answers from its spool). A marker that does not match (the
/// file was replaced, another prefix) is ignored: the full push then decides.
struct PushedMarkers {
    let walDirectory: String
    var root: String { walDirectory + "/.wal-e/pushed" }

    static func identity(_ st: stat, prefix: String) -> String {
        "\(st.st_dev) \(st.st_ino) \(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) \(prefix)\n"
    }

    /// Whether `name` was archived by an earlier pool as the file it is now, to `prefix`.
    func matches(_ name: String, _ st: stat, prefix: String) -> Bool {
        POSIX.readSmallFile(root + "/" + name) == Self.identity(st, prefix: prefix)
    }

    func exists(_ name: String) -> Bool { POSIX.lstat(root + "/" + name) != nil }

    /// Records `name` (in the WAL directory) as archived to `prefix`; best effort: without the
    /// marker PostgreSQL's call simply finds the object identical in the store.
    func record(_ name: String, prefix: String) {
        guard let st = POSIX.stat(walDirectory + "/" + name) else { return }
        try? POSIX.makeDirectories(root, mode: 0o700)
        guard let w = try? AtomicFileWriter(path: root + "/" + name, mode: 0o600) else { return }
        try? w.write(Array(Self.identity(st, prefix: prefix).utf8))
        try? w.commit(durable: false)
    }

    func remove(_ name: String) { unlink(root + "/" + name) }

    /// Removes the markers of segments that are no longer `.ready` (archived, or recycled).
    func sweep() {
        guard let names = try? POSIX.listDirectory(root) else { return }
        for n in names where POSIX.lstat(walDirectory + "/archive_status/" + n + ".ready") == nil {
            unlink(root + "/" + n)
        }
    }
}
