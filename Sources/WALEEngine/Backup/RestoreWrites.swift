import WALECore

/// `WALE_RESTORE_DIRECT`: whether backup-fetch writes the large files of a cluster around the page
/// cache (O_DIRECT). Off by default. On the machines this runs on, writing into page-cache pages
/// whose memory was handed back to the hypervisor costs a fault per page: an S3 restore of an
/// 8.6 GB cluster on two cores spent 45 % of its CPU copying into the page cache, and took
/// 10.9–13.7 s buffered against 9.5–10.2 s direct. But where the disk, not the CPU, is the limit
/// the kernel's write-back does better than one direct write at a time per file: the same cluster
/// from file:// took 6.6–6.7 s buffered and 9.5–10.4 s direct, and a 1.46 GB one restored 1.10–1.25×
/// slower direct from either store. So it is the operator's choice, for restores that are short of
/// CPU (see docs/design.md, "Restores written around the page cache").
public enum RestoreWrites: String, Sendable, CaseIterable {
    case off, on

    public static func from(env: [String: String]) throws -> RestoreWrites {
        guard let v = env["WALE_RESTORE_DIRECT"], !v.isEmpty else { return .off }
        guard let w = RestoreWrites(rawValue: v.lowercased()) else {
            throw WALEError(.user, "WALE_RESTORE_DIRECT=\(v) is neither on nor off", hint: "on, or off (the default)")
        }
        return w
    }
}
