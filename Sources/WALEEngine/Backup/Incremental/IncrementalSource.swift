import WALECore
import WALEStorage

/// The members of an incremental backup: the cluster walked as for a full one, each regular file
/// compared with the parent's copy. Unchanged files are not stored (the cluster manifest takes
/// them from the parent); relation files with few changed blocks become changed-blocks members.
final class IncrementalSource: MemberSource {
    enum Mode {
        /// PostgreSQL 17+: the blocks WAL summaries report changed since the parent started.
        case block(BlockChanges)
        /// PostgreSQL 15 and 16: a file whose size and modification time (to the nanosecond)
        /// are the parent's is unchanged, unless the parent saw it modified just before the
        /// parent started (ManifestEntry.unchangedSince: a later write could then carry the same
        /// time; pgBackRest's guard). Files written in place without changing either are missed:
        /// the documented limit of every file-level incremental (docs/incremental.md).
        case file(parentStart: Double)
    }

    let walker: ClusterWalker
    let parent: [String: ManifestEntry]
    let mode: Mode
    /// Files of the cluster this backup does not store whole (parent copies and patched ones).
    private(set) var unstored: [ClusterFile] = []
    private(set) var patchedFiles = 0
    private(set) var changedBlocks = 0

    init(walker: ClusterWalker, parent: [String: ManifestEntry], mode: Mode) {
        self.walker = walker
        self.parent = parent
        self.mode = mode
    }

    func next() throws -> PlannedMember? {
        while let m = try walker.next() {
            guard m.entry.kind == .file, m.entry.name != "global/pg_control", let p = parent[m.entry.name],
                p.mode & 0o7777 == m.entry.mode & 0o7777
            else { return m }
            var final = ManifestEntry(
                path: m.entry.name, size: m.entry.size, mode: m.entry.mode, checksum: "", algorithm: p.algorithm, mtime: m.entry.mtime,
                mtimeNanos: m.mtimeNanos)
            switch mode {
            case .file(let parentStart):
                guard p.unchangedSince(backupStart: parentStart, size: m.entry.size, seconds: m.entry.mtime, nanos: m.mtimeNanos) else { return m }
                final.checksum = p.checksum
                unstored.append(ClusterFile(entry: final, source: .parent))
            case .block(let changes):
                guard let rel = RelationFile(path: m.entry.name) else { return m }
                let unlogged = rel.fork != .initialization && POSIX.lstat(RelationFile.initForkPath(of: m.localPath)) != nil
                switch changes.method(for: rel, size: m.entry.size, parentSize: p.size, unlogged: unlogged) {
                case .whole:
                    return m
                case .reference:
                    final.checksum = p.checksum
                    unstored.append(ClusterFile(entry: final, source: .parent))
                case .delta(let blocks):
                    unstored.append(ClusterFile(entry: final, source: .delta))
                    patchedFiles += 1
                    changedBlocks += blocks.count
                    var d = m
                    d.entry.name = DeltaMember.memberName(for: m.entry.name)
                    d.entry.size = DeltaMember.memberSize(blocks: blocks.count)
                    d.delta = (blocks, m.entry.size)
                    return d
                }
            }
        }
        return nil
    }
}
