#if canImport(Glibc)
import Glibc
#endif
import WALECore
import WALEStorage

/// One layer of an incremental chain being restored, as SafeExtractor sees it.
public struct ChainLayer: Sendable {
    public var index: Int
    public var plan: ChainPlan
    /// The backup asked for: its directories and links are the cluster's.
    public var isNewest: Bool { index == plan.layers.count - 1 }
}

/// backup-fetch of an incremental backup: its chain (the full backup, then each incremental up to
/// it) restored layer by layer straight from storage into the target directory, never into a
/// scratch copy. Each file is written once whole, from the newest layer that stored it whole;
/// layers after that write only their changed blocks over it and cut it to its final length.
/// Every stored byte read is checked against its layer's partition manifest as it streams (a
/// partition holding nothing the restore uses is not read), and at the end every file of the
/// cluster must be there with its final size.
extension BackupFetch {
    /// `sentinel`: the newest layer's (a delta restore's mtime rule uses its start).
    func restoreChain(
        _ layers: [BackupInfo], sentinel: Sentinel, root: String, allowed: [String], options: Options
    ) async throws -> (files: Int, bytes: Int64, partitions: Int) {
        let plan = try await reader.chainPlan(layers.map(\.name))
        logger.info(
            "restoring the chain \(layers.map(\.name.description).joined(separator: " → "))",
            detail: "\(plan.final.count) files; \(plan.deltas.count) patched with changed blocks")
        // A delta restore first finds the final files already in place: no layer writes them.
        var found: Set<String> = []
        if options.delta {
            let judge = deltaJudge(root: root, sentinel: sentinel, options: options)
            let finals = Array(plan.final.values)
            let slices = stride(from: 0, to: finals.count, by: 256).map { Array(finals[$0..<min($0 + 256, finals.count)]) }
            let inPlace = try await boundedConcurrently(slices, width: options.poolSize) { slice -> [String] in
                var buffer: [UInt8] = []
                return try slice.filter { try judge.inPlace($0, buffer: &buffer) }.map(\.path)
            }
            found = Set(inPlace.joined())
        }
        let kept = found
        var partitionsByLayer: [[(Int, String)]] = []
        for l in layers { partitionsByLayer.append(try await reader.partitions(l.name)) }
        progress.setTotal(units: partitionsByLayer.reduce(0) { $0 + $1.count })
        progress.start(show: options.showProgress)
        var files = 0
        var bytes: Int64 = 0
        var extracted: [ExtractedPartition] = []
        for (i, l) in layers.enumerated() {
            guard !partitionsByLayer[i].isEmpty else { throw WALEError(.corrupt, "backup \(l.name) has no tar partitions") }
            let layer = ChainLayer(index: i, plan: plan)
            let done = try await boundedConcurrently(partitionsByLayer[i], width: options.poolSize) { p -> ExtractedPartition in
                // A partition whose every file a newer layer stores whole again (a table rewritten
                // since) or a delta restore found in place is not read at all; the newest layer's
                // only when its directories are there and it holds no links.
                let manifest = try await reader.partitionManifest(l.name, p.0)
                let unused = manifest.files.allSatisfy {
                    kept.contains(DeltaMember.target(ofMember: $0.path) ?? $0.path) || plan.action(layer: i, file: $0.path) == .skip
                }
                if unused && !layer.isNewest {
                    progress.unitDone()
                    return ExtractedPartition(files: 0, bytes: 0, keptFiles: 0, keptBytes: 0, members: [])
                }
                if unused && options.delta, let others = manifest.others, others.links.isEmpty,
                    others.directories.allSatisfy({ POSIX.isDirectory(root + "/" + $0) })
                {
                    progress.unitDone()
                    return ExtractedPartition(files: 0, bytes: 0, keptFiles: 0, keptBytes: 0, members: Set(others.directories))
                }
                return try await fetchPartition(
                    p, backup: l.name, root: root, allowed: allowed, manifest: true, delta: options.delta, kept: kept, layer: layer,
                    manifestRead: manifest.files)
            }
            files += done.reduce(0) { $0 + $1.files }
            bytes += done.reduce(Int64(0)) { $0 + $1.bytes }
            // A delta restore keeps what the cluster holds: the newest layer's directories and
            // links, and the chain's final files (older layers also list files since dropped).
            extracted += done.map { p in
                var q = p
                if !layer.isNewest { q.members = [] }
                return q
            }
        }
        if options.delta {
            let keptBytes = kept.reduce(Int64(0)) { $0 + (plan.final[$1]?.size ?? 0) }
            progress.add(bytes: Int(keptBytes))
            try finishDelta(
                root: root, extracted: extracted, alsoKeep: Set(plan.final.keys), counts: (kept.count, plan.final.count, keptBytes))
        }
        try checkFinalSizes(plan, root: root)
        return (files, bytes, partitionsByLayer.reduce(0) { $0 + $1.count })
    }

    /// Every file of the final cluster is there with its final size; each gets its final
    /// modification time (a later `--delta-trust-mtime` restore compares it).
    private func checkFinalSizes(_ plan: ChainPlan, root: String) throws {
        var wrong: [String] = []
        for (path, e) in plan.final {
            let local = root + "/" + (path == "global/pg_control" ? SafeExtractor.heldBackControlFile : path)
            guard let st = POSIX.stat(local), st.st_mode & S_IFMT == S_IFREG, Int64(st.st_size) == e.size else {
                wrong.append(path)
                continue
            }
            if let m = e.mtime, Int64(st.st_mtim.tv_sec) != m || Int64(st.st_mtim.tv_nsec) != e.mtimeNanos ?? 0 {
                let ns = Int(e.mtimeNanos ?? 0)
                var times = [timespec(tv_sec: Int(m), tv_nsec: ns), timespec(tv_sec: Int(m), tv_nsec: ns)]
                utimensat(AT_FDCWD, local, &times, AT_SYMLINK_NOFOLLOW)
            }
        }
        if !wrong.isEmpty {
            throw WALEError(
                .corrupt, "\(wrong.count) files of the restored chain are missing or have the wrong size",
                detail: wrong.sorted().prefix(5).joined(separator: ", "), hint: "the chain is damaged; restore its full backup instead")
        }
    }
}
