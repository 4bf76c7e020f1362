#if canImport(Glibc)
import Glibc
#endif
import WALECore
import WALEStorage

extension BackupFetch {
    /// Sets up (restore spec) or verifies (user-made links) the tablespace symlinks and returns the
    /// real tablespace locations extraction may write into.
    func prepareTablespaces(_ sentinel: Sentinel, root: String, options: Options) throws -> [String] {
        var specs = sentinel.tablespaces
        if let specArg = options.restoreSpec {
            if specArg != "SOURCE" {
                specs = try loadRestoreSpec(specArg, over: specs)
            }
            // The restore goes into PG_CLUSTER_DIRECTORY whatever base_prefix says (WAL-E issue #291).
            try POSIX.makeDirectories(root + "/pg_tblspc", mode: 0o700)
            for t in specs {
                guard t.link.hasPrefix("pg_tblspc/") else {
                    throw WALEError(.user, "restore spec link \"\(t.link)\" for tablespace \(t.oid) must start with pg_tblspc/")
                }
                let loc = t.loc.hasSuffix("/") && t.loc.count > 1 ? String(t.loc.dropLast()) : t.loc
                guard loc.hasPrefix("/") else { throw WALEError(.user, "tablespace \(t.oid): location \"\(t.loc)\" must be absolute") }
                try POSIX.makeDirectories(loc, mode: 0o700)
                let linkPath = root + "/" + t.link
                if let st = POSIX.lstat(linkPath) {
                    if st.st_mode & S_IFMT == S_IFLNK && POSIX.realPath(linkPath) == POSIX.realPath(loc) { continue }
                    throw WALEError(.user, "\(linkPath) already exists and does not link to \(loc)", hint: "restore into an empty directory")
                }
                if symlink(loc, linkPath) != 0 { throw POSIX.error("create tablespace link", linkPath) }
            }
        }
        if options.blindRestore { return specs.compactMap { POSIX.realPath(root + "/" + $0.link) } }
        var missing: [String] = []
        var locations: [String] = []
        for t in specs {
            let linkPath = root + "/" + t.link
            guard let st = POSIX.lstat(linkPath), st.st_mode & S_IFMT == S_IFLNK, POSIX.isDirectory(linkPath), let real = POSIX.realPath(linkPath)
            else {
                missing.append("\(t.link) → \(t.loc)")
                continue
            }
            locations.append(real)
        }
        if !missing.isEmpty {
            throw WALEError(
                .user, "Symlinks for some tablespaces not found or created.", detail: "missing: " + missing.joined(separator: ", "),
                hint: "create each link to an empty directory, or use --restore-spec FILE|SOURCE, or --blind-restore to restore tablespaces into pg_tblspc itself")
        }
        return locations
    }

    /// WAL-E's restore spec: `{"<oid>": {"loc": ..., "link": ...}, "tablespaces": [...], "base_prefix": ...}`
    /// merged over the backup's own spec.
    func loadRestoreSpec(_ path: String, over specs: [TablespaceSpec]) throws -> [TablespaceSpec] {
        let fd: Int32
        do { fd = try POSIX.open(path, O_RDONLY) } catch { throw WALEError(.user, "File not found: \(path)", hint: "--restore-spec takes a JSON file or SOURCE") }
        defer { close(fd) }
        let text = String(decoding: try POSIX.read(fd, count: 1 << 20, path: path), as: UTF8.self)
        let json: JSON
        do { json = try JSON.parse(text) } catch { throw WALEError(.user, "restore spec \(path) is not valid JSON", detail: "\(error)") }
        var byOID = Dictionary(specs.map { ($0.oid, $0) }, uniquingKeysWith: { a, _ in a })
        var order = specs.map(\.oid)
        if let list = json["tablespaces"]?.array {
            order = list.compactMap { $0.string ?? $0.int.map { String($0) } }
        }
        for oid in order {
            if let o = json[oid] {
                byOID[oid] = TablespaceSpec(oid: oid, loc: o["loc"]?.string ?? byOID[oid]?.loc ?? "", link: o["link"]?.string ?? "pg_tblspc/" + oid)
            }
        }
        return order.compactMap { byOID[$0] }
    }

    /// A restored tablespace_map makes PostgreSQL recreate the links at startup from the *source*
    /// locations (WAL-E issue #354). Rewrite it to say where the tablespaces really are now, and
    /// drop entries restored as plain directories (blind restore).
    func fixTablespaceMap(root: String) {
        let path = root + "/tablespace_map"
        guard let fd = try? POSIX.open(path, O_RDONLY) else { return }
        let text = String(decoding: (try? POSIX.read(fd, count: 1 << 20, path: path)) ?? [], as: UTF8.self)
        close(fd)
        var lines: [String] = []
        for line in text.split(separator: "\n") {
            guard let sp = line.firstIndex(of: " ") else { continue }
            let oid = String(line[..<sp])
            let link = root + "/pg_tblspc/" + oid
            if let st = POSIX.lstat(link), st.st_mode & S_IFMT == S_IFLNK, let real = POSIX.realPath(link) {
                lines.append(oid + " " + real)
            }
        }
        if lines.isEmpty {
            unlink(path)
        } else if let w = try? AtomicFileWriter(path: path) {
            try? w.write(Array((lines.joined(separator: "\n") + "\n").utf8))
            try? w.commit(durable: true)
        }
    }

    /// A blind restore leaves tablespaces as plain directories in pg_tblspc; PostgreSQL 15+ refuses
    /// those at the end of recovery unless `allow_in_place_tablespaces` is on.
    func allowInPlaceTablespaces(root: String) throws {
        let inPlace = ((try? POSIX.listDirectory(root + "/pg_tblspc")) ?? []).filter {
            POSIX.lstat(root + "/pg_tblspc/" + $0).map { $0.st_mode & S_IFMT == S_IFDIR } ?? false
        }
        guard !inPlace.isEmpty else { return }
        let version = (POSIX.readSmallFile(root + "/PG_VERSION") ?? "").trimmingWhitespace()
        guard let major = Int(version.split(separator: ".").first ?? ""), major >= 15 else { return }
        let path = root + "/postgresql.auto.conf"
        let fd = try POSIX.open(path, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        defer { close(fd) }
        try POSIX.writeAll(
            fd, Array("\n# Added by wal-e backup-fetch --blind-restore: tablespaces are directories in pg_tblspc\nallow_in_place_tablespaces = on\n".utf8),
            path: path)
        logger.warning(
            "tablespaces \(inPlace.joined(separator: ", ")) were restored as directories inside pg_tblspc",
            detail: "allow_in_place_tablespaces = on was added to postgresql.auto.conf so PostgreSQL \(major) accepts them",
            hint: "to move them elsewhere, restore with links or --restore-spec instead")
    }

    func writeRecoverySettings(root: String, _ r: RecoverySettings) throws {
        func quote(_ s: String) -> String { "'" + s.replacingAll("'", with: "''") + "'" }
        var conf = "\n# Added by wal-e backup-fetch\nrestore_command = \(quote(r.restoreCommand))\n"
        if let t = r.targetTime { conf += "recovery_target_time = \(quote(t))\n" }
        if let t = r.targetLSN { conf += "recovery_target_lsn = \(quote(t))\n" }
        if let t = r.targetName { conf += "recovery_target_name = \(quote(t))\n" }
        if let a = r.targetAction { conf += "recovery_target_action = \(quote(a))\n" }
        let path = root + "/postgresql.auto.conf"
        let fd = try POSIX.open(path, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        defer { close(fd) }
        try POSIX.writeAll(fd, Array(conf.utf8), path: path)
        let signal = try POSIX.open(root + "/recovery.signal", O_WRONLY | O_CREAT, 0o600)
        close(signal)
        logger.info("recovery prepared", detail: "recovery.signal and restore_command written to \(path)")
    }

    /// Flushes everything restored to stable storage (one syncfs per file system).
    func syncFileSystems(_ paths: [String]) throws {
        for p in paths { try POSIX.syncFileSystem(p) }
    }
}

extension String {
    func replacingAll(_ a: Character, with b: String) -> String {
        var out = ""
        for c in self { if c == a { out += b } else { out.append(c) } }
        return out
    }
}
