import WALECore

/// Compares the files of one partition, as they stream out of its tar, with the partition's
/// manifest: each listed file's size and checksum (of the algorithm its entry names), every listed
/// file present, and which files the tar holds that the manifest does not list. backup-fetch's
/// extractor and verify's checker both feed it.
final class ManifestMatcher {
    let expected: [String: ManifestEntry]
    let partition: String
    private var hasher: FileChecksummer?
    private var current: (path: String, entry: ManifestEntry)?
    private var size: Int64 = 0
    private var modeMismatch: UInt32?
    private(set) var seen: Set<String> = []
    /// Regular files in the tar that the manifest does not list.
    private(set) var unlisted: [String] = []

    init(_ entries: [ManifestEntry], partition: String) {
        expected = Dictionary(entries.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        self.partition = partition
    }

    /// A regular file starts (`path`: its normalised relative path; `mode`: its tar header's).
    func begin(file path: String, mode: UInt32) {
        size = 0
        modeMismatch = nil
        guard let e = expected[path] else {
            current = nil
            unlisted.append(path)
            return
        }
        current = (path, e)
        if e.mode & 0o7777 != mode & 0o7777 { modeMismatch = mode }
        if hasher?.kind != e.algorithm { hasher = FileChecksummer(e.algorithm) }
    }

    var isChecking: Bool { current != nil }

    func update(_ b: UnsafeRawBufferPointer) {
        guard current != nil else { return }
        hasher?.update(copying: b)
        size += Int64(b.count)
    }

    /// The file ended: its size and checksum must be the manifest's.
    func end() throws {
        guard let (path, m) = current else { return }
        current = nil
        seen.insert(path)
        let digest = hasher?.finalizeAndReset() ?? ""
        if let mode = modeMismatch {
            throw WALEError(
                .corrupt, "\(path) in \(partition) does not match the backup manifest",
                detail: "manifest: mode \(String(m.mode & 0o7777, radix: 8)); stored: mode \(String(mode & 0o7777, radix: 8))")
        }
        if m.size != size || m.checksum != digest {
            let alg = m.algorithm.rawValue
            throw WALEError(
                .corrupt, "\(path) in \(partition) does not match the backup manifest",
                detail: "manifest: \(m.size) bytes, \(alg) \(m.checksum); stored: \(size) bytes, \(alg) \(digest)")
        }
    }

    /// Listed files the partition did not hold, in name order.
    var missing: [String] { expected.keys.filter { !seen.contains($0) }.sorted() }

    /// After the whole partition: every file the manifest lists must have been seen.
    func checkComplete() throws {
        let missing = missing
        if !missing.isEmpty {
            throw WALEError(.corrupt, "\(partition) lacks \(missing.count) files listed in the backup manifest", detail: missing.prefix(5).joined(separator: ", "))
        }
    }
}
