#if canImport(Glibc)
import Glibc
#endif
import WALECore

/// `WALE_RESTORE_DIRECT`: whether backup-fetch writes the large files of a cluster around the page
/// cache (O_DIRECT). On the machines this runs on, writing into page-cache pages whose memory was
/// handed back to the hypervisor costs a fault per page: an S3 restore of an 8.6 GB cluster spent
/// 45 % of its CPU copying into the page cache, and took 12.8 s buffered against 9.2 s direct.
/// A small cluster restores faster through the cache (1.46 GB: direct took 1.25× the time from
/// file:// and 1.10× from S3), whose memory is still warm and whose write-back overlaps better
/// than one direct write at a time per file. Hence `auto`: direct when the cluster would fill at
/// least a quarter of the machine's memory (a restore that large evicts everything else from the
/// cache, and PostgreSQL reads most of it from disk later anyway). See docs/design.md, "Restores
/// written around the page cache".
public enum RestoreWrites: String, Sendable, CaseIterable {
    case auto, on, off

    public static func from(env: [String: String]) throws -> RestoreWrites {
        guard let v = env["WALE_RESTORE_DIRECT"], !v.isEmpty else { return .auto }
        guard let w = RestoreWrites(rawValue: v.lowercased()) else {
            throw WALEError(
                .user, "WALE_RESTORE_DIRECT=\(v) is not auto, on or off",
                hint: "auto (the default: direct when the cluster is at least a quarter of the memory), on, or off")
        }
        return w
    }

    /// Whether a cluster of `clusterBytes` is written around the page cache on a machine with
    /// `memoryBytes` of memory.
    public func aroundCache(clusterBytes: Int64, memoryBytes: Int64) -> Bool {
        switch self {
        case .on: return true
        case .off: return false
        case .auto: return memoryBytes > 0 && clusterBytes >= memoryBytes / 4
        }
    }

    /// The machine's physical memory (0 when it cannot be told).
    public static var physicalMemory: Int64 {
        let pages = sysconf(Int32(_SC_PHYS_PAGES))
        let size = sysconf(Int32(_SC_PAGESIZE))
        return pages > 0 && size > 0 ? Int64(pages) * Int64(size) : 0
    }
}
