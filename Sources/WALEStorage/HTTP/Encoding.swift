import CWALESupport
import Crypto
import NIOCore
import WALECore

// Encodings every HTTP store uses: percent-encoding, base64, body digests, HTTP dates.

/// RFC 3986 encoding as SigV4 wants it (and Azure, Swift and GCS accept): unreserved characters stay, everything else is %XX
/// (upper case); `/` stays only when `keepSlash` (object key paths).
public func percentEncode(_ s: String, keepSlash: Bool) -> String {
    var out = ""
    out.reserveCapacity(s.utf8.count)
    for b in s.utf8 {
        switch b {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            out.unicodeScalars.append(Unicode.Scalar(b))
        case UInt8(ascii: "/") where keepSlash:
            out.append("/")
        default:
            let h = Array("0123456789ABCDEF".utf8)
            out += "%" + String(decoding: [h[Int(b >> 4)], h[Int(b & 15)]], as: UTF8.self)
        }
    }
    return out
}

func md5Base64(_ b: any RequestBody) throws -> String { base64(Array(try md5(b))) }

/// The MD5 of a request body (Content-MD5, Swift's ETag).
func md5(_ b: any RequestBody) throws -> Insecure.MD5.Digest {
    var h = Insecure.MD5()
    try b.forEachStretch { h.update(bufferPointer: $0) }
    return h.finalize()
}

/// S3's CRC32C form: the four big-endian bytes of the CRC, base64.
func crc32cBase64(_ b: any RequestBody) throws -> String {
    var c: UInt32 = 0
    try b.forEachStretch { c = wale_crc32c(c, $0.baseAddress, $0.count) }
    return base64([UInt8(c >> 24), UInt8(truncatingIfNeeded: c >> 16), UInt8(truncatingIfNeeded: c >> 8), UInt8(truncatingIfNeeded: c)])
}

func base64(_ bytes: [UInt8]) -> String {
    let t = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    var out: [UInt8] = []
    var i = 0
    while i < bytes.count {
        let n = min(3, bytes.count - i)
        let v = (UInt32(bytes[i]) << 16) | (n > 1 ? UInt32(bytes[i + 1]) << 8 : 0) | (n > 2 ? UInt32(bytes[i + 2]) : 0)
        out.append(t[Int(v >> 18 & 63)])
        out.append(t[Int(v >> 12 & 63)])
        out.append(n > 1 ? t[Int(v >> 6 & 63)] : UInt8(ascii: "="))
        out.append(n > 2 ? t[Int(v & 63)] : UInt8(ascii: "="))
        i += 3
    }
    return String(decoding: out, as: UTF8.self)
}

/// `Sun, 29 Nov 2026 15:30:00 GMT` (RFC 1123), for x-ms-date.
func httpDate(_ epoch: Double) -> String {
    let t = UTCTime(epochSeconds: epoch.rounded(.down))
    let days = Int((epoch / 86_400).rounded(.down))
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][((days % 7) + 7) % 7]
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"][t.month - 1]
    func z(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(weekday), \(z(t.day)) \(month) \(t.year) \(z(t.hour)):\(z(t.minute)):\(z(t.second)) GMT"
}

/// `Sat, 21 Nov 2026 06:51:25 GMT` → seconds since the epoch.
func parseHTTPDate(_ s: String) -> Double? {
    let parts = s.split(separator: " ")
    guard parts.count == 6 else { return nil }
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    guard let m = months.firstIndex(of: String(parts[2])), let d = Int(parts[1]), let y = Int(parts[3]) else { return nil }
    func z(_ v: Int, _ n: Int) -> String { let t = String(v); return String(repeating: "0", count: max(0, n - t.count)) + t }
    let iso = z(y, 4) + "-" + z(m + 1, 2) + "-" + z(d, 2) + "T" + parts[4] + "Z"
    return parseISO8601(iso)
}

/// `n` in decimal, zero-padded to `width` digits (part and block numbers).
func zeroPadded(_ n: Int, _ width: Int) -> String {
    let d = String(n)
    return String(repeating: "0", count: max(0, width - d.count)) + d
}

/// WAL-E's object names on Swift and GCS: the key with a leading `/` (WAL-E joined the prefix path
/// with `/` and these stores keep it). Names without it are not WAL-E's and are kept as they are.
enum WALENames {
    static func name(_ key: String) -> String { "/" + key }
    static func key(_ name: String) -> String { name.hasPrefix("/") ? String(name.dropFirst()) : name }
}
