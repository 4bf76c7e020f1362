import WALECore

/// One tar member as wal-e writes or reads it.
public struct TarEntry: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case file
        case directory
        case symlink(target: String)
        case hardlink(target: String)
        /// Devices, FIFOs and other types: skipped on extraction.
        case other(UInt8)
    }

    /// The path relative to the archive root (no trailing `/`); `""` is the root itself.
    public var name: String
    public var kind: Kind
    public var size: Int64
    public var mode: UInt32
    public var mtime: Int64
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    public var uname = ""
    public var gname = ""

    public init(name: String, kind: Kind, size: Int64 = 0, mode: UInt32, mtime: Int64) {
        self.name = name
        self.kind = kind
        self.size = size
        self.mode = mode
        self.mtime = mtime
    }
}

/// ustar headers, with PAX extended headers for what ustar cannot hold (long names and link
/// targets, sizes ≥ 8 GiB). Readers: Python's tarfile (WAL-E), GNU tar, bsdtar, and ours.
public enum TarFormat {
    public static let blockSize = 512
    /// Python tarfile's RECORDSIZE: the stream is padded to a multiple of it, as WAL-E's are.
    public static let recordSize = 10240

    /// Header block(s) for an entry. The root entry `""` is written as `/`, like WAL-E.
    public static func header(for e: TarEntry) -> [UInt8] {
        var name = e.name.isEmpty ? "/" : e.name
        if e.kind == .directory && !name.hasSuffix("/") { name += "/" }
        var pax: [(String, String)] = []
        var ustarName = name
        var ustarPrefix = ""
        if name.utf8.count > 100 {
            if let (p, n) = splitForUstar(name) {
                ustarPrefix = p
                ustarName = n
            } else {
                pax.append(("path", name))
                ustarName = String(decoding: Array(name.utf8.suffix(99)), as: UTF8.self)
            }
        }
        var link = ""
        var type: UInt8
        switch e.kind {
        case .file: type = UInt8(ascii: "0")
        case .directory: type = UInt8(ascii: "5")
        case .symlink(let t): type = UInt8(ascii: "2"); link = t
        case .hardlink(let t): type = UInt8(ascii: "1"); link = t
        case .other(let t): type = t
        }
        if link.utf8.count > 100 {
            pax.append(("linkpath", link))
            link = ""
        }
        let size = e.kind == .file ? e.size : 0
        if size > 0o77777777777 { pax.append(("size", String(size))) }

        var out: [UInt8] = []
        if !pax.isEmpty {
            let body = paxRecords(pax)
            out += block(name: "././@PaxHeader", prefix: "", mode: 0o644, uid: 0, gid: 0, size: Int64(body.count), mtime: e.mtime, type: UInt8(ascii: "x"), link: "", uname: "", gname: "")
            out += body
            out += padding(body.count)
        }
        out += block(
            name: ustarName, prefix: ustarPrefix, mode: e.mode & 0o7777, uid: e.uid, gid: e.gid,
            size: min(size, 0o77777777777), mtime: e.mtime, type: type, link: link, uname: e.uname, gname: e.gname)
        return out
    }

    /// Zero bytes that pad `n` bytes of member data to a whole block.
    public static func padding(_ n: Int) -> [UInt8] {
        let r = n % blockSize
        return r == 0 ? [] : [UInt8](repeating: 0, count: blockSize - r)
    }

    /// The two zero blocks ending an archive, plus padding of the whole stream (`total` bytes so
    /// far) to a multiple of `recordSize`.
    public static func trailer(after total: Int64) -> [UInt8] {
        let end = total + 2 * Int64(blockSize)
        let rem = Int(end % Int64(recordSize))
        return [UInt8](repeating: 0, count: 2 * blockSize + (rem == 0 ? 0 : recordSize - rem))
    }

    static func splitForUstar(_ name: String) -> (String, String)? {
        let u = Array(name.utf8)
        var i = min(u.count - 1, 155)
        while i > 0 {
            if u[i] == UInt8(ascii: "/") && u.count - i - 1 <= 100 && u.count - i - 1 > 0 {
                return (String(decoding: u[..<i], as: UTF8.self), String(decoding: u[(i + 1)...], as: UTF8.self))
            }
            i -= 1
        }
        return nil
    }

    static func paxRecords(_ records: [(String, String)]) -> [UInt8] {
        var out: [UInt8] = []
        for (k, v) in records {
            let payload = " \(k)=\(v)\n".utf8.count
            var len = payload + 1
            while String(len).utf8.count + payload != len { len = String(len).utf8.count + payload }
            out += Array("\(len) \(k)=\(v)\n".utf8)
        }
        return out
    }

    static func block(
        name: String, prefix: String, mode: UInt32, uid: UInt32, gid: UInt32, size: Int64, mtime: Int64, type: UInt8,
        link: String, uname: String, gname: String
    ) -> [UInt8] {
        var b = [UInt8](repeating: 0, count: blockSize)
        func put(_ s: String, _ o: Int, _ n: Int) {
            for (i, c) in s.utf8.prefix(n).enumerated() { b[o + i] = c }
        }
        func octal(_ v: Int64, _ o: Int, _ n: Int) {
            let s = String(v, radix: 8)
            put(String(repeating: "0", count: max(0, n - 1 - s.count)) + s, o, n - 1)
        }
        put(name, 0, 100)
        octal(Int64(mode), 100, 8)
        octal(Int64(uid & 0o7777777), 108, 8)
        octal(Int64(gid & 0o7777777), 116, 8)
        octal(size, 124, 12)
        octal(max(0, min(mtime, 0o77777777777)), 136, 12)
        b[156] = type
        put(link, 157, 100)
        put("ustar", 257, 6)
        put("00", 263, 2)
        put(uname, 265, 32)
        put(gname, 297, 32)
        octal(0, 329, 8)
        octal(0, 337, 8)
        put(prefix, 345, 155)
        for i in 148..<156 { b[i] = 0x20 }
        let sum = b.reduce(0) { $0 + Int($1) }
        let s = String(sum, radix: 8)
        put(String(repeating: "0", count: max(0, 6 - s.count)) + s, 148, 6)
        b[154] = 0
        b[155] = 0x20
        return b
    }
}
