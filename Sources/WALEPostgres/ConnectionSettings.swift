#if canImport(Glibc)
import Glibc
#endif
import WALECore

/// Where and as whom to connect, from libpq's environment (`PGHOST`, `PGPORT`, `PGUSER`,
/// `PGPASSWORD`, `PGDATABASE`, `PGPASSFILE` / `~/.pgpass`), resolved as libpq does.
public struct ConnectionSettings: Sendable, Equatable {
    public enum Endpoint: Sendable, Equatable {
        case unixSocket(path: String)
        case tcp(host: String, port: Int)
    }

    public var endpoints: [Endpoint]
    public var port: Int
    public var user: String
    public var database: String
    public var password: String?

    /// `osUser` is the effective user's name (libpq's default for `PGUSER`); `pgpass` the
    /// contents of the password file, if any; `defaultSocketDirectories` libpq's compiled-in ones.
    public static func resolve(
        env: [String: String], osUser: String, pgpass: String?,
        defaultSocketDirectories: [String] = ["/var/run/postgresql", "/tmp"]
    ) throws(WALEError) -> ConnectionSettings {
        let portText = env["PGPORT"].flatMap { $0.isEmpty ? nil : $0 } ?? "5432"
        guard let port = Int(portText), (1...65535).contains(port) else {
            throw WALEError(.user, "PGPORT=\(portText) is not a port number")
        }
        let user = env["PGUSER"].flatMap { $0.isEmpty ? nil : $0 } ?? osUser
        // WAL-E always used the `postgres` database; PGDATABASE overrides it.
        let database = env["PGDATABASE"].flatMap { $0.isEmpty ? nil : $0 } ?? "postgres"
        var endpoints: [Endpoint] = []
        let hosts = env["PGHOST"].flatMap { $0.isEmpty ? nil : $0 }.map { $0.split(separator: ",").map(String.init) }
        for h in hosts ?? defaultSocketDirectories {
            if h.hasPrefix("/") {
                endpoints.append(.unixSocket(path: h + "/.s.PGSQL.\(port)"))
            } else {
                endpoints.append(.tcp(host: h, port: port))
            }
        }
        var password = env["PGPASSWORD"].flatMap { $0.isEmpty ? nil : $0 }
        if password == nil, let pgpass {
            let hostForPgpass: String
            switch endpoints.first {
            case .tcp(let h, _)?: hostForPgpass = h
            default: hostForPgpass = "localhost"
            }
            password = Self.lookup(pgpass: pgpass, host: hostForPgpass, port: port, database: database, user: user)
        }
        return ConnectionSettings(endpoints: endpoints, port: port, user: user, database: database, password: password)
    }

    /// The password from a `.pgpass` file for these coordinates (`*` matches anything; `\:` and
    /// `\\` are escapes; the first matching line wins; socket connections match `localhost`).
    public static func lookup(pgpass: String, host: String, port: Int, database: String, user: String) -> String? {
        for rawLine in pgpass.split(separator: "\n", omittingEmptySubsequences: true) {
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            if line.hasPrefix("#") { continue }
            var fields: [String] = []
            var current = ""
            var escaped = false
            for c in line {
                if escaped {
                    current.append(c)
                    escaped = false
                } else if c == "\\" {
                    escaped = true
                } else if c == ":" && fields.count < 4 {
                    fields.append(current)
                    current = ""
                } else {
                    current.append(c)
                }
            }
            fields.append(current)
            guard fields.count == 5 else { continue }
            func matches(_ pattern: String, _ value: String) -> Bool { pattern == "*" || pattern == value }
            if matches(fields[0], host) && matches(fields[1], String(port)) && matches(fields[2], database)
                && matches(fields[3], user)
            {
                return fields[4]
            }
        }
        return nil
    }
}
