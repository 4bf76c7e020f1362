/// What to delete.
public enum DeletionTarget: Sendable, Equatable {
    /// Backups that started before this backup (when it exists) or, by position, before this
    /// backup's or WAL segment's log/segment number.
    case beforeName(String)
    /// Backups that started before this time (seconds since the epoch).
    case beforeTime(Double)
    /// Keep the newest `count` (permanent backups do not count), and any younger than `minAge` seconds.
    case retain(count: Int, minAge: Double?)
    /// WAL-E's pre-005 layouts.
    case oldVersions
    /// Every backup and WAL file (permanent backups and what they need are kept).
    case everything
}

/// One key the plan deletes, with WAL-E's description of what it is.
public struct PlannedDeletion: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case sentinel = "a base backup sentinel file"
        case versionFile = "a extended version metadata file"
        case volume = "a base backup volume"
        case backupPart = "part of a base backup"
        case wal = "a wal file"
        case backupHistory = "a backup history file"
        case oldVersion = "an object of an obsolete WAL-E layout"
    }
    public var key: String
    public var kind: Kind
}

/// The result of planning: a pure value, shown by a dry run and carried out by a confirmed run.
public struct DeletionPlan: Sendable, Equatable {
    public var deletions: [PlannedDeletion] = []
    public var deletedBackups: [BackupName] = []
    public var keptBackups: [BackupName] = []
    /// Incomplete backups left alone because they may still be in progress.
    public var inProgress: [BackupName] = []
    /// Summary lines (MSG, DETAIL, HINT), in WAL-E's words where it had some.
    public var notes: [(String, String?, String?)] = []

    public static func == (a: DeletionPlan, b: DeletionPlan) -> Bool {
        a.deletions == b.deletions && a.deletedBackups == b.deletedBackups && a.keptBackups == b.keptBackups
            && a.inProgress == b.inProgress
    }
}

/// Plans deletions from an `ArchiveState`. It never removes: `.history` files; a permanent backup
/// or the WAL it needs; a backup that may still be in progress or the WAL it needs; WAL that a kept
/// backup needs to reach consistency and to roll forward along its timeline and every later
/// timeline branching from it.
public struct DeletionPlanner: Sendable {
    /// The full backup an incremental's chain starts from (nil when a link is missing).
    func chainRoot(_ b: ArchiveState.Backup, _ all: [ArchiveState.Backup]) -> BackupName? {
        var current = b
        for _ in 0..<10_000 {
            guard let p = current.parent else { return current.name }
            guard let pb = all.first(where: { $0.name == p }) else { return nil }
            current = pb
        }
        return nil
    }

    /// An incomplete backup touched within this many seconds may still be in progress.
    public var inProgressGrace: Double = 3600
    public var now: Double

    public init(now: Double) { self.now = now }

    public func plan(_ target: DeletionTarget, _ state: ArchiveState) throws(WALEError) -> DeletionPlan {
        var plan = DeletionPlan()
        let complete = state.backups.filter(\.complete)
        // Newest first, by real start time and then position (not by segment number alone).
        let newestFirst = complete.sorted { ($0.startTime, $0.startLogSeg) > ($1.startTime, $1.startLogSeg) }

        if target == .oldVersions {
            guard !complete.isEmpty else {
                throw WALEError(
                    .user, "refusing to delete the old WAL-E layouts: there is no complete backup in the current format",
                    hint: "take a backup with backup-push first")
            }
            plan.deletions = state.obsoleteKeys.map { PlannedDeletion(key: $0, kind: .oldVersion) }
            plan.keptBackups = newestFirst.map(\.name)
            return plan
        }

        var doomed: Set<BackupName> = []
        var walFloor: UInt64?  // `before`: WAL at or after this log/segment is kept whatever its timeline
        switch target {
        case .retain(let count, let minAge):
            guard count >= 1 else {
                throw WALEError(
                    .user, "refusing to retain \(count) base backups",
                    detail: "retain 0 would delete every backup (WAL-E silently deleted none)",
                    hint: "use `delete everything` to remove all backups, or retain 1 or more")
            }
            // Full backups are counted; each incremental goes with the full backup its chain
            // starts from (pgBackRest's repo-retention-full).
            var kept = 0
            let fulls = newestFirst.filter { !$0.name.isIncremental }
            for b in fulls where !b.permanent {
                let young = minAge.map { now - b.startTime < $0 } ?? false
                if kept < count || young {
                    if kept < count { kept += 1 }
                } else {
                    doomed.insert(b.name)
                }
            }
            for b in complete where b.name.isIncremental && !b.permanent {
                if let r = chainRoot(b, complete), doomed.contains(r) { doomed.insert(b.name) }
            }
            if fulls.isEmpty {
                plan.notes.append(("Not deleting any data.", "No existing base backups.", nil))
            } else if doomed.isEmpty {
                plan.notes.append(("Retaining all \(fulls.count) base backups.", nil, nil))
            } else {
                plan.notes.append(("Deleting \(doomed.count) oldest base backups.", "Found \(fulls.count) total base backups.", nil))
            }
        case .beforeName(let text):
            if let n = BackupName(text), let anchor = complete.first(where: { $0.name == n }) {
                for b in complete where (b.startTime, b.startLogSeg) < (anchor.startTime, anchor.startLogSeg) && !b.permanent {
                    doomed.insert(b.name)
                }
                walFloor = anchor.startLogSeg
            } else {
                let seg: WALSegmentName
                if let n = BackupName(text) {
                    seg = n.segment
                } else if let s = WALSegmentName(text) {
                    seg = s
                } else {
                    throw WALEError(
                        .user, "\"\(text)\" is neither a backup name nor a WAL segment name",
                        hint: "use e.g. base_000000010000000000000004_00000040, 000000010000000000000004 or an ISO 8601 time")
                }
                for b in complete where b.startLogSeg < seg.logSeg && !b.permanent { doomed.insert(b.name) }
                walFloor = seg.logSeg
            }
        case .beforeTime(let t):
            for b in complete where b.startTime < t && !b.permanent { doomed.insert(b.name) }
            if let oldestKept = newestFirst.last(where: { !doomed.contains($0.name) }) { walFloor = oldestKept.startLogSeg }
        case .everything:
            for b in complete where !b.permanent { doomed.insert(b.name) }
        case .oldVersions:
            break
        }

        // A kept backup keeps every backup its chain is built on.
        let byName = Dictionary(complete.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for b in complete where !doomed.contains(b.name) {
            var parent = b.parent
            var steps = 0
            while let p = parent, let pb = byName[p], steps < 10_000 {
                if doomed.remove(p) != nil {
                    plan.notes.append(("keeping \(p): \(b.name) is built on it", nil, nil))
                }
                parent = pb.parent
                steps += 1
            }
        }

        // Incomplete backups: in progress (newer than every complete backup, or recently touched)
        // are left alone; the rest are leftovers of failed or killed runs.
        let newestCompleteStart = newestFirst.first.map { ($0.startTime, $0.startLogSeg) }
        var protectedStarts: [(TimelineID, UInt64)] = []
        var sweptIncomplete: [ArchiveState.Backup] = []
        for b in state.backups where !b.complete {
            let newer = newestCompleteStart.map { (b.startTime, b.startLogSeg) > $0 } ?? true
            if newer || now - b.lastActivity < inProgressGrace {
                plan.inProgress.append(b.name)
                protectedStarts.append((b.timeline, b.startLogSeg))
            } else {
                sweptIncomplete.append(b)
            }
        }
        for b in complete where !doomed.contains(b.name) {
            if let p = b.parent { plan.notes.append(("\(b.name) is an incremental backup over \(p)", nil, nil)) }
            plan.keptBackups.append(b.name)
            protectedStarts.append((b.timeline, b.startLogSeg))
        }
        plan.keptBackups.sort()

        // Backups: each sentinel first, so a backup disappears from view before its volumes go.
        for b in state.backups.sorted(by: { $0.name < $1.name }) {
            let isDoomed = doomed.contains(b.name) || sweptIncomplete.contains(where: { $0.name == b.name })
            guard isDoomed else { continue }
            if b.complete { plan.deletedBackups.append(b.name) }
            if let s = b.sentinelKey { plan.deletions.append(PlannedDeletion(key: s, kind: .sentinel)) }
            for k in b.keys.sorted() where k != b.sentinelKey {
                let kind: PlannedDeletion.Kind =
                    k.hasSuffix("/extended_version.txt") ? .versionFile : (k.contains("/tar_partitions/") ? .volume : .backupPart)
                plan.deletions.append(PlannedDeletion(key: k, kind: kind))
            }
        }

        // WAL: kept if some protected start needs it.
        let minStart = protectedStarts.map(\.1).min()
        // With nothing protected (no backup yet, say) WAL may be all there is: keep it, unless
        // everything was asked for.
        let keepAllWAL = protectedStarts.isEmpty && target != .everything
        func needed(_ seg: WALSegmentName) -> Bool {
            if keepAllWAL { return true }
            if let walFloor, seg.logSeg >= walFloor { return true }
            for (tli, start) in protectedStarts where seg.logSeg >= start {
                if seg.timeline == tli { return true }
                if let anc = state.ancestors[seg.timeline] {
                    if anc.contains(tli) { return true }
                } else if seg.timeline != TimelineID(1) {
                    // A timeline without a history file: its ancestry is unknown, keep it.
                    return true
                }
            }
            return false
        }
        for w in state.wal.sorted(by: { $0.key < $1.key }) {
            switch w.file {
            case .segment(let s)?, .partial(let s)?:
                if !needed(s) { plan.deletions.append(PlannedDeletion(key: w.key, kind: .wal)) }
            case .backupHistory(let s, _)?:
                if !needed(s) { plan.deletions.append(PlannedDeletion(key: w.key, kind: .backupHistory)) }
            case .history?, nil:
                continue
            }
        }
        if minStart == nil && !complete.isEmpty && target != .everything {
            plan.notes.append(("no backup would remain; WAL is kept", nil, nil))
        }
        return plan
    }
}
