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
    func restoreChain(
        _ layers: [BackupInfo], root: String, allowed: [String], options: Options
    ) async throws -> (files: Int, bytes: Int64, partitions: Int) {
        let plan = try await reader.chainPlan(layers.map(\.name))
        logger.info(
            "restoring the chain \(layers.map(\.name.description).joined(separator: " → "))",
            detail: "\(plan.final.count) files; \(plan.deltas.count) patched with changed blocks")
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
                // A partition of an older layer whose every file a newer layer stores whole again
                // (a table rewritten since) is not read at all.
                let manifest = try await reader.manifest(l.name, p.0)
                if !layer.isNewest && manifest.allSatisfy({ plan.action(layer: i, file: $0.path) == .skip }) {
                    progress.unitDone()
                    return ExtractedPartition(files: 0, bytes: 0, keptFiles: 0, keptBytes: 0, members: [])
                }
                return try await fetchPartition(
                    p, backup: l.name, root: root, allowed: allowed, manifest: true, delta: options.delta, layer: layer, manifestRead: manifest)
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
        if options.delta { try finishDelta(root: root, extracted: extracted, alsoKeep: Set(plan.final.keys)) }
        try checkFinalSizes(plan, root: root)
        return (files, bytes, partitionsByLayer.reduce(0) { $0 + $1.count })
    }

    /// Every file of the final cluster is there with its final size.
    private func checkFinalSizes(_ plan: ChainPlan, root: String) throws {
        var wrong: [String] = []
        for (path, e) in plan.final {
            let local = root + "/" + (path == "global/pg_control" ? SafeExtractor.heldBackControlFile : path)
            guard let st = POSIX.stat(local), st.st_mode & S_IFMT == S_IFREG, Int64(st.st_size) == e.size else {
                wrong.append(path)
                continue
            }
        }
        if !wrong.isEmpty {
            throw WALEError(
                .corrupt, "\(wrong.count) files of the restored chain are missing or have the wrong size",
                detail: wrong.sorted().prefix(5).joined(separator: ", "), hint: "the chain is damaged; restore its full backup instead")
        }
    }
}
