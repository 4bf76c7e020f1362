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
/// Before a partition is downloaded, each file its manifest lists is compared with the file on
/// disk (DeltaJudge): size and mode, then the checksum of the content; with `--delta-trust-mtime`,
/// size, mode and modification time instead, for files the backup recorded as modified before it
/// started (ManifestEntry.unchangedSince; pgBackRest's `--delta --force`). A partition whose files are all in place and
/// whose directories all exist is not downloaded at all; in any other, the files in place are
/// passed over (their stored bytes are still checked against the manifest) and the others
/// rewritten. Once every partition is in, whatever the backup
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

    func deltaJudge(root: String, sentinel: Sentinel, options: Options) -> DeltaJudge {
        let start = sentinel.extra.flatMap { parseISO8601($0.startTime) }
        if options.deltaTrustMtime && start == nil {
            logger.warning(
                "--delta-trust-mtime: the backup does not record when it started, so every file is compared by checksum",
                hint: "backups taken by wal-e record it")
        }
        return DeltaJudge(root: root, trustMtimeBefore: options.deltaTrustMtime ? start : nil)
    }

    /// Judges partition `files` against the directory before it is downloaded: the files already
    /// in place, and the partition's result when nothing in it needs writing (nil: download it).
    func deltaPrepass(
        files: [ManifestEntry], others: ManifestFormat.PartitionOthers?, judge: DeltaJudge
    ) throws -> (kept: Set<String>, untouched: ExtractedPartition?) {
        var kept: Set<String> = []
        var keptBytes: Int64 = 0
        for f in try judge.inPlace(files) {
            kept.insert(f.path)
            keptBytes += f.size
        }
        guard kept.count == files.count, let others, others.links.isEmpty,
            others.directories.allSatisfy({ POSIX.isDirectory(judge.root + "/" + $0) })
        else { return (kept, nil) }
        progress.add(bytes: Int(keptBytes))
        return (
            kept,
            ExtractedPartition(
                files: files.count, bytes: 0, keptFiles: files.count, keptBytes: keptBytes,
                members: kept.union(others.directories))
        )
    }

    /// A delta restore empties pg_wal (WAL of a diverged history must not be replayed). Its
    /// segments, most of what a delta restore removes, go while the partitions download rather
    /// than after: no backup holds a regular file directly in pg_wal (its contents are never
    /// backed up), so nothing restored can be among them. A failure is left to the final pass,
    /// which reports it. A pg_wal that is a link to another disk is left alone, as the final pass
    /// leaves it. Returns the count removed.
    func clearWALSegments(root: String) -> Int {
        let dir = root + "/pg_wal"
        guard let st = POSIX.lstat(dir), st.st_mode & S_IFMT == S_IFDIR, let names = try? POSIX.listDirectory(dir) else { return 0 }
        var removed = 0
        for name in names {
            let path = dir + "/" + name
            if let f = POSIX.lstat(path), f.st_mode & S_IFMT == S_IFREG, unlink(path) == 0 { removed += 1 }
        }
        return removed
    }

    /// `counts`: a chain's files kept and in all (its layers' counts would count a patched file twice).
    /// `removedEarly`: what clearWALSegments removed.
    func finishDelta(
        root: String, extracted: [ExtractedPartition], alsoKeep: Set<String> = [], counts: (kept: Int, files: Int, keptBytes: Int64)? = nil,
        removedEarly: Int = 0
    ) throws {
        var members = alsoKeep
        for p in extracted { members.formUnion(p.members) }
        members.insert(SafeExtractor.heldBackControlFile)
        var removed = removedEarly
        try prune(root, relative: "", members: members, removed: &removed)
        let kept = counts?.kept ?? extracted.reduce(0) { $0 + $1.keptFiles }
        let keptBytes = counts?.keptBytes ?? extracted.reduce(Int64(0)) { $0 + $1.keptBytes }
        let files = counts?.files ?? extracted.reduce(0) { $0 + $1.files }
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

/// Whether a file on disk already is the one a backup holds (delta restores).
struct DeltaJudge: Sendable {
    let root: String
    /// `--delta-trust-mtime`: the backup's start (seconds since the epoch). A file whose time on
    /// disk is not the one recorded is rewritten unread; one with the recorded size and time is
    /// kept unread when the backup recorded it as modified before its start
    /// (ManifestEntry.unchangedSince), and otherwise read and checksummed.
    let trustMtimeBefore: Double?

    /// The files of `files` already in place, judged in order. When checksums decide, the small
    /// files are opened and read into the page cache ahead of the one judged (OpenAhead): a
    /// directory of many small files is otherwise one cold random read at a time.
    func inPlace(_ files: [ManifestEntry]) throws -> [ManifestEntry] {
        var buffer: [UInt8] = []
        var ahead = OpenAhead(count: files.count) { [root, trustMtimeBefore] i in
            let m = files[i]
            return trustMtimeBefore == nil && OpenAhead.isSmall(m.size) && !m.checksum.isEmpty ? root + "/" + m.path : nil
        }
        defer { ahead.closeAll() }
        return try files.indices.filter { try inPlace(files[$0], buffer: &buffer, opened: ahead.take($0)) }.map { files[$0] }
    }

    /// Reads into `buffer` (allocated at the first read) when the checksum decides, through
    /// `opened` (a descriptor of the file opened ahead, which it closes) if given.
    func inPlace(_ m: ManifestEntry, buffer: inout [UInt8], opened: Int32? = nil) throws -> Bool {
        var opened = opened
        defer { if let f = opened { close(f) } }
        if m.path == "global/pg_control" { return false }  // always the backup's, written last
        let path = root + "/" + m.path
        guard let st = POSIX.lstat(path), st.st_mode & S_IFMT == S_IFREG, Int64(st.st_size) == m.size,
            UInt32(st.st_mode) & 0o7777 == m.mode & 0o7777
        else { return false }
        if let start = trustMtimeBefore, let mtime = m.mtime {
            // Another time on disk: changed since the backup read it (or never was its copy), so
            // rewritten without being read. The same time: kept unread when the backup recorded
            // it before its start; within the guard the checksum decides.
            guard Int64(st.st_mtim.tv_sec) == mtime, (m.mtimeNanos ?? Int64(st.st_mtim.tv_nsec)) == Int64(st.st_mtim.tv_nsec) else { return false }
            if m.modifiedBefore(start) { return true }
        }
        guard !m.checksum.isEmpty else { return false }
        let fd: Int32
        if let f = opened {
            fd = f
            opened = nil
        } else {
            fd = try POSIX.open(path, O_RDONLY | O_NOFOLLOW, what: "open")
        }
        defer { close(fd) }
        if buffer.isEmpty { buffer = [UInt8](repeating: 0, count: 1 << 20) }
        let sum = FileChecksummer(m.algorithm)
        var total: Int64 = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw POSIX.error("read", path)
            }
            if n == 0 { break }
            buffer.withUnsafeBytes { sum.update(copying: UnsafeRawBufferPointer(rebasing: $0[..<n])) }
            total += Int64(n)
        }
        return total == m.size && sum.finalizeAndReset() == m.checksum
    }
}
