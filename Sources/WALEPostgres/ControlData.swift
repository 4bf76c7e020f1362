#if canImport(Glibc)
import Glibc
#endif
import WALECore
import WALEStorage

/// What `pg_controldata` says about a stopped cluster (for `backup-push --while-offline`).
public struct ControlData: Sendable {
    public var redo: LSN
    public var timeline: TimelineID
    public var segmentSize: WALSegmentSize
    public var systemIdentifier: String
    /// `PostgreSQL <major>` from PG_VERSION, for extended_version.txt.
    public var versionLine: String

    /// Parses pg_controldata's output (English labels; LC_ALL=C is forced when we run it).
    public static func parse(_ text: String, version: String) throws -> ControlData {
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[String(line[..<colon])] = line[line.index(after: colon)...].trimmingWhitespace()
        }
        guard let redoText = fields["Latest checkpoint's REDO location"], let redo = LSN(parsing: redoText) else {
            throw WALEError(.internal, "pg_controldata output lacks the REDO location")
        }
        let size = fields["Bytes per WAL segment"].flatMap { UInt64($0) }.flatMap { WALSegmentSize(bytes: $0) } ?? .default
        // The REDO WAL file (10+) names the timeline the redo record is on.
        var tli = fields["Latest checkpoint's TimeLineID"].flatMap { UInt32($0) } ?? 1
        if let redoFile = fields["Latest checkpoint's REDO WAL file"], let seg = WALSegmentName(redoFile) { tli = seg.timeline.value }
        if let state = fields["Database cluster state"], state != "shut down" && state != "shut down in recovery" {
            throw WALEError(
                .user, "the cluster was not shut down cleanly (state: \(state))",
                hint: "start and cleanly stop PostgreSQL, or take an online backup")
        }
        return ControlData(
            redo: redo, timeline: TimelineID(tli), segmentSize: size, systemIdentifier: fields["Database system identifier"] ?? "",
            versionLine: "PostgreSQL " + version)
    }

    /// Runs `pg_controldata` (from `PG_CONTROLDATA`, `$PATH`, or `/usr/lib/postgresql/<PG_VERSION>/bin`).
    public static func read(dataDirectory: String, env: [String: String]) throws -> ControlData {
        let version = (POSIX.readSmallFile(dataDirectory + "/PG_VERSION") ?? "").trimmingWhitespace()
        guard !version.isEmpty else { throw WALEError(.user, "\(dataDirectory) has no PG_VERSION: not a PostgreSQL data directory") }
        var candidates: [String] = []
        if let p = env["PG_CONTROLDATA"], !p.isEmpty { candidates.append(p) }
        for dir in (env["PATH"] ?? "").split(separator: ":") { candidates.append(dir + "/pg_controldata") }
        candidates.append("/usr/lib/postgresql/\(version)/bin/pg_controldata")
        guard let exe = candidates.first(where: { access($0, X_OK) == 0 }) else {
            throw WALEError(.user, "pg_controldata not found", hint: "set PG_CONTROLDATA to its path or put PostgreSQL's bin directory on PATH")
        }
        let out = try runCapturing([exe, dataDirectory], env: ["LC_ALL": "C", "LANG": "C"])
        return try parse(out, version: version)
    }
}


/// Runs a program with an argument array, waits, returns stdout; non-zero exit is an error.
func runCapturing(_ args: [String], env: [String: String]) throws -> String {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { throw WALEError(.io, "pipe failed") }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_addclose(&actions, fds[0])
    let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    var envp: [UnsafeMutablePointer<CChar>?] = []
    var p = environ
    while let e = p.pointee {
        let s = String(cString: e)
        let k = String(s.prefix(while: { $0 != "=" }))
        if env[k] == nil { envp.append(strdup(s)) }
        p += 1
    }
    for (k, v) in env { envp.append(strdup("\(k)=\(v)")) }
    envp.append(nil)
    defer { envp.forEach { free($0) } }
    var pid = pid_t()
    let rc = posix_spawn(&pid, args[0], &actions, nil, argv, envp)
    close(fds[1])
    guard rc == 0 else {
        close(fds[0])
        throw WALEError(.user, "could not run \(args[0]): \(String(cString: strerror(rc)))")
    }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        out += buf[0..<n]
    }
    close(fds[0])
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    guard status == 0 else { throw WALEError(.user, "\(args[0]) failed (status \(status))") }
    return String(decoding: out, as: UTF8.self)
}
