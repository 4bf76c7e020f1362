import CWALESupport
#if canImport(Glibc)
import Glibc
#endif
import WALECore
import WALEEngine
import WALEStorage

/// Sends log records to stderr and/or syslog in WAL-E's shape.
enum LogSink {
    static func make(_ destinations: [LogDestination], facility: Int32) -> @Sendable (LogRecord) -> Void {
        let toStderr = destinations.contains(.stderr)
        let toSyslog = destinations.contains(.syslog)
        if toSyslog { openlog("wal-e", LOG_PID, facility) }
        return { record in
            let (time, pid) = (UTCTime(epochSeconds: POSIX.now()), getpid())
            if toStderr {
                Progress.clearLine()
                writeStderr(record.formatted(time: time, pid: pid) + "\n")
            }
            if toSyslog {
                let line = record.logger + " " + record.body(time: time, pid: pid)
                let priority: Int32
                switch record.level {
                case .debug: priority = LOG_DEBUG
                case .info: priority = LOG_INFO
                case .warning: priority = LOG_WARNING
                case .error: priority = LOG_ERR
                case .critical: priority = LOG_CRIT
                }
                wale_syslog(priority, line)
            }
        }
    }
}

/// One write(2) per message, so concurrent lines do not interleave.
func writeStderr(_ s: String) {
    var s = s
    s.withUTF8 { p in
        var done = 0
        while done < p.count {
            let n = write(2, p.baseAddress! + done, p.count - done)
            if n <= 0 { if errno == EINTR { continue } else { return } }
            done += n
        }
    }
}

func writeStdout(_ s: String) {
    var s = s
    s.withUTF8 { p in
        var done = 0
        while done < p.count {
            let n = write(1, p.baseAddress! + done, p.count - done)
            if n <= 0 { if errno == EINTR { continue } else { return } }
            done += n
        }
    }
}
