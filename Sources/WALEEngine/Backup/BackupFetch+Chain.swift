#if canImport(Glibc)
import Glibc
#endif
import WALECore
import WALEStorage

/// One partition of a chain's layer to restore, with its manifest.
struct ChainJob: Sendable {
    var layer: Int
    var partition: (Int, String)
    var files: [ManifestEntry]
    var others: ManifestFormat.PartitionOthers?
    /// It holds changed blocks to write over a file an earlier layer wrote.
    var patches: Bool { files.contains { DeltaMember.target(ofMember: $0.path) != nil } }
}

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
        for l in layers {
            let parts = try await reader.partitions(l.name)
            guard !parts.isEmpty else { throw WALEError(.corrupt, "backup \(l.name) has no tar partitions") }
            partitionsByLayer.append(parts)
        }
        progress.setTotal(units: partitionsByLayer.reduce(0) { $0 + $1.count })
        progress.start(show: options.showProgress)
        // Every partition's manifest first (small objects), to know which partitions write changed
        // blocks over files of earlier layers: only those wait for the layers before them. The
        // others write whole files, each of which exactly one layer writes, so they all run in one
        // pool, the layers' partitions side by side (one layer at a time left the pool half idle
        // at each layer's end: a file-level chain of four restored in 1.6× a full restore's time).
        let jobs = try await boundedConcurrently(
            partitionsByLayer.enumerated().flatMap { i, parts in parts.map { (i, $0) } }, width: options.poolSize * 2
        ) { i, p -> ChainJob in
            let m = try await reader.partitionManifest(layers[i].name, p.0)
            return ChainJob(layer: i, partition: p, files: m.files, others: m.others)
        }
        let run: @Sendable (ChainJob) async throws -> ExtractedPartition = { job in
            let layer = ChainLayer(index: job.layer, plan: plan)
            // A partition whose every file a newer layer stores whole again (a table rewritten
            // since) or a delta restore found in place is not read at all; the newest layer's
            // only when its directories are there and it holds no links.
            let unused = job.files.allSatisfy {
                kept.contains(DeltaMember.target(ofMember: $0.path) ?? $0.path) || plan.action(layer: job.layer, file: $0.path) == .skip
            }
            if unused && !layer.isNewest {
                self.progress.unitDone()
                return ExtractedPartition(files: 0, bytes: 0, keptFiles: 0, keptBytes: 0, members: [])
            }
            if unused && options.delta, let others = job.others, others.links.isEmpty,
                others.directories.allSatisfy({ POSIX.isDirectory(root + "/" + $0) })
            {
                self.progress.unitDone()
                return ExtractedPartition(files: 0, bytes: 0, keptFiles: 0, keptBytes: 0, members: Set(others.directories))
            }
            var done = try await self.fetchPartition(
                job.partition, backup: layers[job.layer].name, root: root, allowed: allowed, manifest: true, delta: options.delta, kept: kept,
                layer: layer, manifestRead: job.files)
            // A delta restore keeps what the cluster holds: the newest layer's directories and
            // links, and the chain's final files (older layers also list files since dropped).
            if !layer.isNewest { done.members = [] }
            return done
        }
        var extracted = try await boundedConcurrently(jobs.filter { !$0.patches }, width: options.poolSize, run)
        for i in layers.indices {
            extracted += try await boundedConcurrently(jobs.filter { $0.patches && $0.layer == i }, width: options.poolSize, run)
        }
        let files = extracted.reduce(0) { $0 + $1.files }
        let bytes = extracted.reduce(Int64(0)) { $0 + $1.bytes }
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
