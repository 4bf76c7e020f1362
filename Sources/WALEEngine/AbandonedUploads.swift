import WALECore
import WALEStorage

/// What uploads killed part way (kill -9, a lost machine) leave in a store that keeps them without
/// listing them as objects: S3 multipart uploads nobody completed or aborted (billed until
/// aborted), Swift segments no manifest refers to. backup-push sweeps them under its prefix before
/// it starts, delete --confirm after it deleted; only leftovers older than
/// `WALE_ABANDONED_UPLOAD_AGE` seconds (default a day: longer than any upload runs) are removed,
/// so an upload still running elsewhere is never touched. A failed sweep is a warning: it never
/// stops the backup or the deletion it came with.
public enum AbandonedUploads {
    public static let ageVariable = "WALE_ABANDONED_UPLOAD_AGE"
    public static let defaultAge: Double = 86_400

    /// The age from the environment; a malformed value is a configuration error.
    public static func age(env: [String: String]) throws(WALEError) -> Double {
        guard let text = env[ageVariable], !text.isEmpty else { return defaultAge }
        guard let v = Double(text), v >= 0, v.isFinite else {
            throw WALEError(.user, "\(ageVariable)=\(text) is not a number of seconds", hint: "unset it for the default (86400), or give e.g. 3600")
        }
        return v
    }

    /// Sweeps under the prefix's path; returns how many uploads were removed (nil when it failed).
    @discardableResult
    public static func sweep(store: any ObjectStore, prefix: StoragePrefix, age: Double, logger: Logger) async -> Int? {
        do {
            let n = try await store.sweepAbandonedUploads(prefix: prefix.pathPrefix, olderThan: age, now: POSIX.now())
            if n > 0 {
                logger.info(
                    "removed \(n) abandoned uploads", detail: "uploads under \(prefix.url(forKey: prefix.pathPrefix)) left unfinished more than \(Int(age)) s ago",
                    hint: "\(ageVariable) sets the age")
            }
            return n
        } catch {
            logger.warning(
                "could not sweep abandoned uploads under \(prefix.url(forKey: prefix.pathPrefix))", detail: "\(error)",
                hint: "they cost storage until removed; the credentials may lack the right to list or abort multipart uploads")
            return nil
        }
    }
}
