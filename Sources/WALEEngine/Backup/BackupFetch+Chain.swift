#if canImport(Glibc)
import Glibc
#endif
import Synchronization
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
    /// The files whose changed blocks it writes.
    var patchTargets: Set<String> { Set(files.compactMap { DeltaMember.target(ofMember: $0.path) }) }

    /// The order a chain's jobs run in and, for each, the earlier jobs it waits for. A job that
    /// writes changed blocks over a file waits for the job that writes the file whole and for
    /// every earlier layer's job that patches it, so each file still sees its base, then each
    /// layer's blocks in layer order, as before; a job waits for nothing else. The whole-file
    /// jobs come first and the patching ones by layer, so every job a job waits for is earlier in
    /// the order: run in that order with any number at once, the earliest unfinished job never
    /// waits, and the restore cannot stall. (A chain's layers once waited for all the whole files:
    /// the changed blocks of a big table were written only after the last partition of unrelated
    /// files, serially layer after layer.)
    static func schedule(_ jobs: [ChainJob], plan: ChainPlan) -> (order: [ChainJob], waitsFor: [[Int]]) {
        let order = jobs.filter { !$0.patches } + plan.layers.indices.flatMap { i in jobs.filter { $0.patches && $0.layer == i } }
        let targets = order.map(\.patchTargets)
        let patched = targets.reduce(into: Set<String>()) { $0.formUnion($1) }
        // Which jobs write each patched file, whole or by blocks.
        var writers: [String: [Int]] = [:]
        for (k, job) in order.enumerated() {
            for f in job.files where patched.contains(f.path) && plan.action(layer: job.layer, file: f.path) == .write {
                writers[f.path, default: []].append(k)
            }
            for t in targets[k] { writers[t, default: []].append(k) }
        }
        let waitsFor = order.enumerated().map { k, job -> [Int] in
            Set(targets[k].flatMap { writers[$0] ?? [] }.filter { order[$0].layer < job.layer }).sorted()
        }
        return (order, waitsFor)
    }
}

/// Which of a restore's jobs (by index) have ended, and who waits for them. A job that failed has
/// ended too: the restore fails with it, and its waiters go on to find themselves cancelled.
final class JobCompletion: Sendable {
    private let state = Mutex<(ended: Set<Int>, waiting: [(jobs: [Int], resume: CheckedContinuation<Void, Never>)])>(([], []))

    func wait(for jobs: [Int]) async {
        guard !jobs.isEmpty else { return }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { s -> Bool in
                if jobs.allSatisfy(s.ended.contains) { return true }
                s.waiting.append((jobs, c))
                return false
            }
            if ready { c.resume() }
        }
    }

    func ended(_ job: Int) {
        let ready = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.ended.insert(job)
            let ended = s.ended
            let (go, stay) = (s.waiting.filter { $0.jobs.allSatisfy(ended.contains) }, s.waiting.filter { !$0.jobs.allSatisfy(ended.contains) })
            s.waiting = stay
            return go.map(\.resume)
        }
        for c in ready { c.resume() }
    }
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
                try judge.inPlace(slice).map(\.path)
            }
            found = Set(inPlace.joined())
        }
        let kept = found
        let aroundCache = writesAroundCache(options: options)
        var partitionsByLayer: [[(Int, String)]] = []
        for l in layers {
            let parts = try await reader.partitions(l.name)
            guard !parts.isEmpty else { throw WALEError(.corrupt, "backup \(l.name) has no tar partitions") }
            partitionsByLayer.append(parts)
        }
        progress.setTotal(units: partitionsByLayer.reduce(0) { $0 + $1.count })
        progress.start(show: options.showProgress)
        // Every partition's manifest first (small objects), to know which partitions write changed
        // blocks over files of earlier layers: only those wait, each for the partitions that
        // write the same files before it (ChainJob.schedule). The others write whole files, each
        // of which exactly one layer writes, so they all run in one pool, the layers' partitions
        // side by side (one layer at a time left the pool half idle at each layer's end: a
        // file-level chain of four restored in 1.6× a full restore's time).
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
                layer: layer, manifestRead: job.files, aroundCache: aroundCache)
            // A delta restore keeps what the cluster holds: the newest layer's directories and
            // links, and the chain's final files (older layers also list files since dropped).
            if !layer.isNewest { done.members = [] }
            return done
        }
        async let walCleared = options.delta ? clearWALSegments(root: root) : 0
        let (order, waitsFor) = ChainJob.schedule(jobs, plan: plan)
        let completion = JobCompletion()
        let extracted = try await boundedConcurrently(Array(order.indices), width: options.poolSize) { k in
            defer { completion.ended(k) }
            await completion.wait(for: waitsFor[k])
            try Task.checkCancellation()
            return try await run(order[k])
        }
        let files = extracted.reduce(0) { $0 + $1.files }
        let bytes = extracted.reduce(Int64(0)) { $0 + $1.bytes }
        if options.delta {
            let keptBytes = kept.reduce(Int64(0)) { $0 + (plan.final[$1]?.size ?? 0) }
            progress.add(bytes: Int(keptBytes))
            try finishDelta(
                root: root, extracted: extracted, alsoKeep: Set(plan.final.keys), counts: (kept.count, plan.final.count, keptBytes),
                removedEarly: await walCleared)
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
