/// Prometheus's text exposition format, as node_exporter's textfile collector reads it: for each
/// metric a HELP and a TYPE line, then its samples. Every sample carries the archive's prefix as a
/// label, so several prefixes can feed one collector directory.
public struct PrometheusText: Sendable {
    public struct Metric: Sendable {
        public var name: String
        public var help: String
        public var value: Double
        public init(_ name: String, _ help: String, _ value: Double) {
            self.name = name
            self.help = help
            self.value = value
        }
    }

    public var labels: [(String, String)]
    public var metrics: [Metric] = []

    public init(labels: [(String, String)]) { self.labels = labels }

    public mutating func gauge(_ name: String, _ help: String, _ value: Double) { metrics.append(Metric(name, help, value)) }

    /// A label value with `\`, `"` and newlines escaped.
    public static func escape(_ v: String) -> String {
        var out = ""
        for c in v {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }

    /// Integers print without a fraction; others in full precision.
    static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }

    public func render() -> String {
        let l = labels.isEmpty ? "" : "{" + labels.map { "\($0.0)=\"\(Self.escape($0.1))\"" }.joined(separator: ",") + "}"
        return metrics.map { m in
            "# HELP \(m.name) \(m.help)\n# TYPE \(m.name) gauge\n\(m.name)\(l) \(Self.number(m.value))\n"
        }.joined()
    }

    /// The value of `name` in a file this type wrote (nil when absent): verify carries its last
    /// success forward across failed runs.
    public static func value(of name: String, in text: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(name + "{") || line.hasPrefix(name + " ") {
            if let v = line.split(separator: " ").last.flatMap({ Double($0) }) { return v }
        }
        return nil
    }
}
