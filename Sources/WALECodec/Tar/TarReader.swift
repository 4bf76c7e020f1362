import WALECore

/// Receives a tar stream's members in order.
public protocol TarSink: AnyObject {
    func begin(_ entry: TarEntry) throws
    /// Data of the current member (regular files only), in order, `entry.size` bytes in all.
    func data(_ bytes: UnsafeRawBufferPointer) throws
    func end() throws
}

/// A streaming tar parser (ustar, GNU long names, PAX): feed it bytes in any chunking; it calls
/// the sink for every member. Header checksums are verified; truncation is an error.
public final class TarReader {
    private enum State { case header, data(remaining: Int64, pad: Int), skip(remaining: Int64), meta(kind: UInt8, remaining: Int, pad: Int), ended }
    private var state = State.header
    private var buffer = InputBuffer()
    private var meta: [UInt8] = []
    private var paxOverrides: [String: String] = [:]
    private var gnuLongName: String?
    private var gnuLongLink: String?
    private let sink: TarSink
    private let name: String
    private var sawEntry = false

    /// `name` is used in error messages (the partition's key).
    public init(sink: TarSink, name: String) {
        self.sink = sink
        self.name = name
    }

    public func feed(_ chunk: [UInt8]) throws {
        buffer.append(chunk)
        try process()
    }

    /// Ends the stream; throws if it stopped inside a member.
    public func finish() throws {
        try process()
        switch state {
        case .header, .ended:
            if !sawEntry { throw corrupt("no members") }
        default:
            throw corrupt("truncated inside a member")
        }
    }

    private func corrupt(_ what: String) -> WALEError { WALEError(.corrupt, "tar stream \(name) is corrupt: \(what)") }

    private func process() throws {
        while true {
            switch state {
            case .ended:
                buffer.consume(buffer.count)  // zero padding after the end marker
                return
            case .header:
                guard buffer.count >= TarFormat.blockSize else { return }
                let block = Array(buffer.slice(0, TarFormat.blockSize))
                buffer.consume(TarFormat.blockSize)
                if block.allSatisfy({ $0 == 0 }) {
                    state = .ended
                    continue
                }
                try parseHeader(block)
            case .data(let remaining, let pad):
                if remaining > 0 {
                    let n = Int(min(remaining, Int64(buffer.count)))
                    guard n > 0 else { return }
                    try buffer.withUnconsumed { try sink.data(UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
                    buffer.consume(n)
                    state = .data(remaining: remaining - Int64(n), pad: pad)
                    continue
                }
                guard buffer.count >= pad else { return }
                buffer.consume(pad)
                try sink.end()
                state = .header
            case .skip(let remaining):
                let n = Int(min(remaining, Int64(buffer.count)))
                buffer.consume(n)
                if remaining - Int64(n) > 0 {
                    state = .skip(remaining: remaining - Int64(n))
                    return
                }
                try sink.end()
                state = .header
            case .meta(let kind, let remaining, let pad):
                guard buffer.count >= remaining + pad else { return }
                meta = Array(buffer.slice(0, remaining))
                buffer.consume(remaining + pad)
                try applyMeta(kind)
                state = .header
            }
        }
    }

    private func parseHeader(_ b: [UInt8]) throws {
        let stored = octal(b[148..<156])
        var sum = 0
        var signedSum = 0
        for (i, c) in b.enumerated() {
            let v = (148..<156).contains(i) ? 0x20 : Int(c)
            sum += v
            signedSum += (148..<156).contains(i) ? 0x20 : Int(Int8(bitPattern: c))
        }
        guard let stored, stored == Int64(sum) || stored == Int64(signedSum) else { throw corrupt("header checksum mismatch") }
        let type = b[156]
        let size = try numeric(b[124..<136])
        guard size >= 0 else { throw corrupt("negative size") }
        let pad = TarFormat.padding(Int(size % Int64(TarFormat.blockSize))).count
        if type == UInt8(ascii: "x") || type == UInt8(ascii: "g") || type == UInt8(ascii: "L") || type == UInt8(ascii: "K") {
            guard size < 1 << 20 else { throw corrupt("extended header too large") }
            state = .meta(kind: type, remaining: Int(size), pad: pad)
            return
        }
        let isUstar = b[257..<262].elementsEqual("ustar".utf8)
        var name = cString(b[0..<100])
        if isUstar && b[263] == UInt8(ascii: "0") {  // POSIX ustar has a prefix field; GNU's "ustar  " does not
            let prefix = cString(b[345..<500])
            if !prefix.isEmpty { name = prefix + "/" + name }
        }
        var link = cString(b[157..<257])
        if let n = gnuLongName { name = n }
        if let l = gnuLongLink { link = l }
        if let p = paxOverrides["path"] { name = p }
        if let l = paxOverrides["linkpath"] { link = l }
        var realSize = size
        if let s = paxOverrides["size"], let v = Int64(s) { realSize = v }
        let mtime = paxOverrides["mtime"].flatMap { Double($0) }.map { Int64($0) } ?? (octal(b[136..<148]) ?? 0)
        gnuLongName = nil
        gnuLongLink = nil
        paxOverrides = [:]

        var kind: TarEntry.Kind
        switch type {
        case UInt8(ascii: "0"), 0, UInt8(ascii: "7"): kind = .file
        case UInt8(ascii: "5"): kind = .directory
        case UInt8(ascii: "2"): kind = .symlink(target: link)
        case UInt8(ascii: "1"): kind = .hardlink(target: link)
        default: kind = .other(type)
        }
        if case .file = kind, name.hasSuffix("/") { kind = .directory }  // old tars
        while name.hasSuffix("/") && name.count > 1 { name.removeLast() }
        var e = TarEntry(name: name, kind: kind, size: kind == .file ? realSize : 0, mode: UInt32(octal(b[100..<108]) ?? 0o600), mtime: mtime)
        e.uid = UInt32(truncatingIfNeeded: octal(b[108..<116]) ?? 0)
        e.gid = UInt32(truncatingIfNeeded: octal(b[116..<124]) ?? 0)
        sawEntry = true
        try sink.begin(e)
        guard kind == .file else {
            // Directories, links: no payload. Other types: skip whatever payload they carry.
            let payload = kind.isLinkOrDirectory ? 0 : realSize
            if payload > 0 {
                state = .skip(remaining: payload + Int64(TarFormat.padding(Int(payload % 512)).count))
            } else {
                try sink.end()
                state = .header
            }
            return
        }
        state = .data(remaining: realSize, pad: TarFormat.padding(Int(realSize % Int64(TarFormat.blockSize))).count)
    }

    private func applyMeta(_ kind: UInt8) throws {
        switch kind {
        case UInt8(ascii: "L"): gnuLongName = cString(meta[...])
        case UInt8(ascii: "K"): gnuLongLink = cString(meta[...])
        case UInt8(ascii: "x"): paxOverrides = try parsePax(meta)
        default: break  // global PAX headers: ignored
        }
    }

    private func parsePax(_ d: [UInt8]) throws -> [String: String] {
        var out: [String: String] = [:]
        var i = 0
        while i < d.count {
            guard let sp = d[i...].firstIndex(of: UInt8(ascii: " ")), let len = Int(String(decoding: d[i..<sp], as: UTF8.self)),
                len > 0, i + len <= d.count
            else { throw corrupt("bad PAX record") }
            let rec = d[(sp + 1)..<(i + len - 1)]
            if let eq = rec.firstIndex(of: UInt8(ascii: "=")) {
                out[String(decoding: rec[..<eq], as: UTF8.self)] = String(decoding: rec[(eq + 1)...], as: UTF8.self)
            }
            i += len
        }
        return out
    }

    private func cString(_ s: ArraySlice<UInt8>) -> String {
        String(decoding: s.prefix(while: { $0 != 0 }), as: UTF8.self)
    }

    private func octal(_ s: ArraySlice<UInt8>) -> Int64? {
        let t = s.filter { $0 != 0 && $0 != 0x20 }
        if t.isEmpty { return 0 }
        return Int64(String(decoding: t, as: UTF8.self), radix: 8)
    }

    /// Octal, or GNU base-256 for large values.
    private func numeric(_ s: ArraySlice<UInt8>) throws -> Int64 {
        if let f = s.first, f & 0x80 != 0 {
            var v: Int64 = Int64(f & 0x7F)
            for c in s.dropFirst() { v = v << 8 | Int64(c) }
            return v
        }
        guard let v = octal(s) else { throw corrupt("bad numeric field") }
        return v
    }
}

extension TarEntry.Kind {
    var isLinkOrDirectory: Bool {
        switch self {
        case .directory, .symlink, .hardlink: return true
        default: return false
        }
    }
}
