import WALECore

/// Just enough XML for S3's and Azure's answers: the text of `<Tag>…</Tag>` elements and `<Block>…</Block>`
/// sections, with the five predefined entities and numeric references decoded.
func xmlBlocks(_ body: [UInt8], _ tag: String) -> [[UInt8]] {
    let open = Array("<\(tag)>".utf8), close = Array("</\(tag)>".utf8)
    var out: [[UInt8]] = []
    var i = 0
    while let s = find(body, open, from: i), let e = find(body, close, from: s + open.count) {
        out.append(Array(body[(s + open.count)..<e]))
        i = e + close.count
    }
    return out
}

func xmlValues(_ body: [UInt8], _ tag: String) -> [String] {
    xmlBlocks(body, tag).map { xmlUnescape(String(decoding: $0, as: UTF8.self)) }
}

/// The `<Code>` of an `<Error>` answer (S3's form; Azure's too).
func xmlErrorCode(_ body: [UInt8]) -> String? {
    guard find(body, Array("<Error>".utf8), from: 0) != nil else { return nil }
    return xmlValues(body, "Code").first
}

private func find(_ h: [UInt8], _ n: [UInt8], from: Int) -> Int? {
    guard !n.isEmpty, h.count >= n.count else { return nil }
    var i = from
    while i + n.count <= h.count {
        if h[i] == n[0] && Array(h[i..<(i + n.count)]) == n { return i }
        i += 1
    }
    return nil
}

func xmlEscape(_ s: String) -> String {
    var o = ""
    for c in s {
        switch c {
        case "&": o += "&amp;"
        case "<": o += "&lt;"
        case ">": o += "&gt;"
        case "\"": o += "&quot;"
        case "'": o += "&apos;"
        default: o.append(c)
        }
    }
    return o
}

func xmlUnescape(_ s: String) -> String {
    guard s.contains("&") else { return s }
    var o = ""
    var i = s.startIndex
    while i < s.endIndex {
        if s[i] == "&", let semi = s[i...].firstIndex(of: ";") {
            let ent = s[s.index(after: i)..<semi]
            var rep: String?
            switch ent {
            case "amp": rep = "&"
            case "lt": rep = "<"
            case "gt": rep = ">"
            case "quot": rep = "\""
            case "apos": rep = "'"
            default:
                if ent.hasPrefix("#x"), let v = UInt32(ent.dropFirst(2), radix: 16), let u = Unicode.Scalar(v) { rep = String(u) }
                else if ent.hasPrefix("#"), let v = UInt32(ent.dropFirst()), let u = Unicode.Scalar(v) { rep = String(u) }
            }
            if let rep {
                o += rep
                i = s.index(after: semi)
                continue
            }
        }
        o.append(s[i])
        i = s.index(after: i)
    }
    return o
}
