/// The two command lines PostgreSQL runs once per WAL segment, recognised without ArgumentParser.
///
/// ArgumentParser builds its view of a command by reflection, and the first reflection of each
/// generic property wrapper makes the Swift runtime scan every protocol conformance in the program
/// (about 10 000 in this static binary): ~7 ms of CPU at every start, most of `wal-e version`'s
/// 8 ms and a quarter of one wal-push (docs/design.md, "Start-up"). Only the exact forms below take
/// this path; anything else — an option, a dash-leading argument, `--help`, a missing or extra
/// argument — goes to ArgumentParser, which then parses (or refuses) it as it always did.
///
///     wal-e [--terse] wal-push PATH
///     wal-e [--terse] wal-fetch NAME DESTINATION
public enum HotCommand: Equatable, Sendable {
    case walPush(terse: Bool, segment: String)
    case walFetch(terse: Bool, segment: String, destination: String)

    /// `arguments`: the command line without the program name.
    public static func parse(_ arguments: [String]) -> HotCommand? {
        var rest = arguments[...]
        let terse = rest.first == "--terse"
        if terse { rest = rest.dropFirst() }
        guard let command = rest.first else { return nil }
        let operands = Array(rest.dropFirst())
        // A dash-leading word may be an option (or "-", "--"): ArgumentParser decides those.
        guard operands.allSatisfy({ !$0.isEmpty && !$0.hasPrefix("-") }) else { return nil }
        switch (command, operands.count) {
        case ("wal-push", 1): return .walPush(terse: terse, segment: operands[0])
        case ("wal-fetch", 2): return .walFetch(terse: terse, segment: operands[0], destination: operands[1])
        default: return nil
        }
    }
}
