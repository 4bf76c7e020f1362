/// Log levels, with Python logging's names (WAL-E's log lines carry them).
public enum LogLevel: Int, Comparable, Sendable {
    case debug = 10, info = 20, warning = 30, error = 40, critical = 50

    public var name: String {
        switch self {
        case .debug: return "DEBUG"
        case .info: return "INFO"
        case .warning: return "WARNING"
        case .error: return "ERROR"
        case .critical: return "CRITICAL"
        }
    }
    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// One log event: WAL-E's MSG / DETAIL / HINT plus sorted structured `key=value` pairs.
public struct LogRecord: Sendable {
    public var logger: String
    public var level: LogLevel
    public var message: String
    public var detail: String?
    public var hint: String?
    public var structured: [String: String]

    public init(
        logger: String, level: LogLevel, message: String, detail: String? = nil, hint: String? = nil,
        structured: [String: String] = [:]
    ) {
        self.logger = logger
        self.level = level
        self.message = message
        self.detail = detail
        self.hint = hint
        self.structured = structured
    }

    /// The message body as WAL-E writes it (also what goes to syslog):
    /// `MSG: …\nDETAIL: …\nHINT: …\nSTRUCTURED: time=…-00 pid=… k=v`, each newline followed by 8 spaces.
    public func body(time: UTCTime, pid: Int32) -> String {
        var s = "MSG: " + message
        if let detail { s += "\nDETAIL: " + detail }
        if let hint { s += "\nHINT: " + hint }
        s += "\nSTRUCTURED: time=\(time.walEFormat) pid=\(pid)"
        for k in structured.keys.sorted() { s += " \(k)=\(structured[k]!)" }
        return s.replacingNewlines()
    }

    /// The whole line in Python logging's `%(name)-12s %(levelname)-8s %(message)s` format.
    public func formatted(time: UTCTime, pid: Int32) -> String {
        pad(logger, 12) + " " + pad(level.name, 8) + " " + body(time: time, pid: pid)
    }
}

extension String {
    fileprivate func replacingNewlines() -> String {
        var out = ""
        out.reserveCapacity(count + 16)
        for c in self {
            out.append(c)
            if c == "\n" { out += "        " }
        }
        return out
    }
}

private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }

/// A UTC wall-clock instant broken into fields (filled in by the caller, so formatting is pure).
public struct UTCTime: Sendable, Equatable {
    public var year, month, day, hour, minute, second, microsecond: Int

    public init(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int, microsecond: Int) {
        (self.year, self.month, self.day, self.hour, self.minute, self.second, self.microsecond) =
            (year, month, day, hour, minute, second, microsecond)
    }

    /// From seconds since the epoch (proleptic Gregorian, UTC), rounding to the microsecond as
    /// Python's `datetime.utcfromtimestamp` does (half to even), so file:// listings match WAL-E's.
    public init(epochSeconds: Double) {
        let whole = epochSeconds.rounded(.towardZero)
        var secs = Int64(whole)
        var us = Int(((epochSeconds - whole) * 1e6).rounded(.toNearestOrEven))
        if us >= 1_000_000 {
            secs += 1
            us -= 1_000_000
        } else if us < 0 {
            secs -= 1
            us += 1_000_000
        }
        microsecond = us
        var days = secs / 86_400
        var rem = secs - days * 86_400
        if rem < 0 {
            rem += 86_400
            days -= 1
        }
        hour = Int(rem / 3600)
        minute = Int(rem % 3600 / 60)
        second = Int(rem % 60)
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        day = Int(doy - (153 * mp + 2) / 5 + 1)
        month = Int(mp < 10 ? mp + 3 : mp - 9)
        year = Int(yoe + era * 400) + (month <= 2 ? 1 : 0)
    }

    /// `%Y-%m-%dT%H:%M:%S.%f-00`, as in WAL-E's STRUCTURED lines.
    public var walEFormat: String { isoNoZone + "-00" }

    /// `%Y-%m-%dT%H:%M:%S.%f` (Python's `datetime.isoformat()` with microseconds).
    public var isoNoZone: String {
        func z(_ v: Int, _ n: Int) -> String {
            let s = String(v)
            return s.count >= n ? s : String(repeating: "0", count: n - s.count) + s
        }
        return "\(z(year, 4))-\(z(month, 2))-\(z(day, 2))T\(z(hour, 2)):\(z(minute, 2)):\(z(second, 2)).\(z(microsecond, 6))"
    }
}

/// A named logger. Records below `minimumLevel` are dropped; the rest go to `sink`.
public struct Logger: Sendable {
    public let name: String
    public let minimumLevel: LogLevel
    private let sink: @Sendable (LogRecord) -> Void

    public init(name: String, minimumLevel: LogLevel = .info, sink: @escaping @Sendable (LogRecord) -> Void) {
        self.name = name
        self.minimumLevel = minimumLevel
        self.sink = sink
    }

    /// The same sink and level under another logger name (WAL-E names loggers by module).
    public func named(_ other: String) -> Logger { Logger(name: other, minimumLevel: minimumLevel, sink: sink) }

    public static let discard = Logger(name: "null", minimumLevel: .critical) { _ in }

    public func log(
        _ level: LogLevel, _ message: String, detail: String? = nil, hint: String? = nil,
        _ structured: [String: String] = [:]
    ) {
        guard level >= minimumLevel else { return }
        sink(LogRecord(logger: name, level: level, message: message, detail: detail, hint: hint, structured: structured))
    }

    public func info(_ m: String, detail: String? = nil, hint: String? = nil, _ s: [String: String] = [:]) {
        log(.info, m, detail: detail, hint: hint, s)
    }
    public func warning(_ m: String, detail: String? = nil, hint: String? = nil, _ s: [String: String] = [:]) {
        log(.warning, m, detail: detail, hint: hint, s)
    }
    public func error(_ m: String, detail: String? = nil, hint: String? = nil, _ s: [String: String] = [:]) {
        log(.error, m, detail: detail, hint: hint, s)
    }
    public func debug(_ m: String, detail: String? = nil, hint: String? = nil, _ s: [String: String] = [:]) {
        log(.debug, m, detail: detail, hint: hint, s)
    }
}
