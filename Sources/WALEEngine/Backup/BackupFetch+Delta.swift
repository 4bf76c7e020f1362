#if canImport(Glibc)
import Glibc
#endif
import WALECore
import WALEStorage

/// What one partition's extraction did (counts for the summary; member paths for a delta restore).
struct ExtractedPartition: Sendable {
    var files: Int
    var bytes: Int64
    var keptFiles: Int
    var keptBytes: Int64
    var members: Set<String>
}

/// `backup-fetch --delta`: rebuild an existing, stopped data directory (a standby to resync, a
/// failed primary) by rewriting only what differs from the backup, as pgBackRest's `--delta`.
///
/// Each file the backup's manifest lists is kept when the file on disk has the manifest's size,
/// mode and checksum (SafeExtractor compares before writing; the stored bytes are still checked
/// against the manifest); any other is rewritten. Once every partition is in, whatever the backup
/// does not hold is removed, so the directory ends as a restore into an empty one would leave it
/// (pg_wal emptied: WAL of a diverged history must not be replayed), except what WAL-E never backs
/// up and an operator keeps: the configuration files (`postgresql.conf`, `pg_hba.conf`,
/// `pg_ident.conf`), the recovery and standby signal files, and the server logs (`pg_log/`,
/// `log/`). Tablespace directories outside the data directory are restored but not pruned.
/// The live-directory refusal and the pg_control-last rule are the same as for any restore: the
/// directory's own pg_control is removed first and the backup's takes its place at the very end.
extension BackupFetch {
    /// Top-level names a delta restore never removes.
    static let deltaKept: Set<String> = ClusterWalker.topLevelExcludedFiles.subtracting(["backup_label", "tablespace_map"])
        .union(["pg_log", "log"])

    func finishDelta(root: String, extracted: [ExtractedPartition], alsoKeep: Set<String> = []) throws {
        var members = alsoKeep
        for p in extracted { members.formUnion(p.members) }
        members.insert(SafeExtractor.heldBackControlFile)
        var removed = 0
        try prune(root, relative: "", members: members, removed: &removed)
        let kept = extracted.reduce(0) { $0 + $1.keptFiles }
        let keptBytes = extracted.reduce(Int64(0)) { $0 + $1.keptBytes }
        let files = extracted.reduce(0) { $0 + $1.files }
        logger.info(
            "delta restore: \(kept) of \(files) files were already in place, \(files - kept) rewritten, \(removed) removed",
            detail: "\(keptBytes) bytes not rewritten",
            ["action": "backup-fetch-delta", "kept": String(kept), "rewritten": String(files - kept), "removed": String(removed)])
    }

    /// Removes what `members` lacks below `dir` (depth first: a directory goes once it is empty),
    /// without following symbolic links.
    private func prune(_ dir: String, relative: String, members: Set<String>, removed: inout Int) throws {
        for name in try POSIX.listDirectory(dir) {
            let rel = relative.isEmpty ? name : relative + "/" + name
            if relative.isEmpty && Self.deltaKept.contains(name) { continue }
            let path = dir + "/" + name
            guard let st = POSIX.lstat(path) else { continue }
            let type = st.st_mode & S_IFMT
            if type == S_IFLNK && relative == "pg_tblspc" { continue }  // tablespace links: made by prepareTablespaces
            if type == S_IFDIR {
                try prune(path, relative: rel, members: members, removed: &removed)
                if !members.contains(rel) {
                    if rmdir(path) != 0 { throw POSIX.error("remove the directory (not in the backup)", path) }
                    removed += 1
                }
            } else if !members.contains(rel) {
                if unlink(path) != 0 && errno != ENOENT { throw POSIX.error("remove (not in the backup)", path) }
                removed += 1
            }
        }
    }
}
