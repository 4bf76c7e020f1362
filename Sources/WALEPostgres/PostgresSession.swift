#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOPosix
import PostgresNIO
import WALECore
import WALEStorage

/// One PostgreSQL session, held for the whole of a non-exclusive backup (the backup is tied to
/// the session that started it and is aborted by the server if the session ends).
public final class PostgresSession: @unchecked Sendable {
    let connection: PostgresConnection
    let logger: Logging.Logger
    public let settings: ConnectionSettings

    init(connection: PostgresConnection, settings: ConnectionSettings, logger: Logging.Logger) {
        self.connection = connection
        self.settings = settings
        self.logger = logger
    }

    /// Connects with libpq's environment, trying each endpoint `PGHOST` names (or libpq's default
    /// socket directories) in turn. `statement_timeout` is switched off for the session, as WAL-E did.
    public static func connect(env: [String: String]) async throws -> PostgresSession {
        let osUser = currentUserName()
        let pgpassPath = env["PGPASSFILE"] ?? (env["HOME"].map { $0 + "/.pgpass" } ?? "")
        let pgpass = POSIX.readSmallFile(pgpassPath)
        let settings = try ConnectionSettings.resolve(env: env, osUser: osUser, pgpass: pgpass)
        var logger = Logging.Logger(label: "wal-e.postgres")
        logger.logLevel = .critical
        var failures: [String] = []
        for endpoint in settings.endpoints {
            let config: PostgresConnection.Configuration
            switch endpoint {
            case .unixSocket(let path):
                if access(path, F_OK) != 0 {
                    failures.append("\(path): no such socket")
                    continue
                }
                config = .init(unixSocketPath: path, username: settings.user, password: settings.password, database: settings.database)
            case .tcp(let host, let port):
                config = .init(host: host, port: port, username: settings.user, password: settings.password, database: settings.database, tls: .disable)
            }
            do {
                let conn = try await PostgresConnection.connect(
                    on: MultiThreadedEventLoopGroup.singleton.any(), configuration: config, id: 1, logger: logger)
                let session = PostgresSession(connection: conn, settings: settings, logger: logger)
                _ = try await session.query("SET statement_timeout = 0")
                return session
            } catch {
                failures.append("\(endpoint): \(describe(error))")
            }
        }
        throw WALEError(
            .user, "could not connect to PostgreSQL as user \"\(settings.user)\" to database \"\(settings.database)\"",
            detail: failures.joined(separator: "; "),
            hint: "set PGHOST (a host name or the socket directory), PGPORT, PGUSER and PGPASSWORD or ~/.pgpass; backups need a superuser or a role with pg_backup_start rights")
    }

    /// Runs SQL and returns every column of every row as text (NULL → nil). Cast non-text
    /// columns with `::text` in the SQL.
    public func query(_ sql: PostgresQuery) async throws -> [[String?]] {
        do {
            let rows = try await connection.query(sql, logger: logger)
            var out: [[String?]] = []
            for try await row in rows {
                var r: [String?] = []
                for cell in row { r.append(try cell.decode(String?.self)) }
                out.append(r)
            }
            return out
        } catch let e as WALEError {
            throw e
        } catch {
            throw WALEError(.user, "PostgreSQL refused a query", detail: "\(sql.sql): \(Self.describe(error))")
        }
    }

    /// The first column of the first row.
    public func value(_ sql: PostgresQuery) async throws -> String? {
        try await query(sql).first?.first ?? nil
    }

    public func close() async {
        try? await connection.close()
    }

    static func describe(_ error: Error) -> String {
        if let p = error as? PSQLError {
            if let m = p.serverInfo?[.message] {
                return m + (p.serverInfo?[.detail].map { " (\($0))" } ?? "")
            }
            return "\(p.code)" + (p.underlying.map { ": \($0)" } ?? "")
        }
        return "\(error)"
    }
}

func currentUserName() -> String {
    if let pw = getpwuid(geteuid()), let name = pw.pointee.pw_name { return String(cString: name) }
    return "postgres"
}
