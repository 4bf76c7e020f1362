/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS[.ffffff]]` (or a space instead of `T`), with an
/// optional `Z` or `±HH:MM` offset (UTC when absent), into seconds since the epoch.
public func parseISO8601(_ text: String) -> Double? {
    let u = Array(text.utf8)
    func num(_ a: Int, _ n: Int) -> Int? {
        guard a + n <= u.count else { return nil }
        var v = 0
        for c in u[a..<(a + n)] {
            guard c >= 48 && c <= 57 else { return nil }
            v = v * 10 + Int(c - 48)
        }
        return v
    }
    guard let y = num(0, 4), u.count >= 10, u[4] == 45, let mo = num(5, 2), u[7] == 45, let d = num(8, 2),
        (1...12).contains(mo), (1...31).contains(d)
    else { return nil }
    var i = 10
    var h = 0, mi = 0, s = 0.0
    if i < u.count && (u[i] == 84 || u[i] == 32) {
        guard let hh = num(i + 1, 2), i + 3 < u.count, u[i + 3] == 58, let mm = num(i + 4, 2), hh < 24, mm < 60 else { return nil }
        h = hh
        mi = mm
        i += 6
        if i < u.count && u[i] == 58 {
            guard let ss = num(i + 1, 2), ss < 61 else { return nil }
            s = Double(ss)
            i += 3
            if i < u.count && u[i] == 46 {
                var j = i + 1
                var scale = 0.1
                while j < u.count, u[j] >= 48 && u[j] <= 57 {
                    s += Double(u[j] - 48) * scale
                    scale /= 10
                    j += 1
                }
                i = j
            }
        }
    }
    var offset = 0
    if i < u.count {
        if u[i] == 90 && i + 1 == u.count {
            i += 1
        } else if u[i] == 43 || u[i] == 45, let oh = num(i + 1, 2) {
            let sign = u[i] == 45 ? -1 : 1
            var om = 0
            var j = i + 3
            if j < u.count && u[j] == 58 {
                guard let m = num(j + 1, 2) else { return nil }
                om = m
                j += 3
            } else if let m = num(j, 2) {
                om = m
                j += 2
            }
            guard j == u.count else { return nil }
            offset = sign * (oh * 3600 + om * 60)
            i = j
        } else {
            return nil
        }
    }
    // Days from civil (Howard Hinnant).
    let yy = mo <= 2 ? y - 1 : y
    let era = (yy >= 0 ? yy : yy - 399) / 400
    let yoe = yy - era * 400
    let doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    let days = era * 146_097 + doe - 719_468
    return Double(days * 86400 + h * 3600 + mi * 60) + s - Double(offset)
}

/// `90`, `90s`, `15m`, `12h`, `7d`, `2w` → seconds.
public func parseDuration(_ text: String) -> Double? {
    guard let last = text.last else { return nil }
    let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604_800]
    if let f = units[last], let v = Double(text.dropLast()), v >= 0 { return v * f }
    if let v = Double(text), v >= 0 { return v }
    return nil
}
