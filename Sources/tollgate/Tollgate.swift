import ArgumentParser
import Foundation
import TollgateCore

/// `tollgate`: the gateway and the operator's tools in one binary.
@main
struct Tollgate: AsyncParsableCommand {
    /// The version `tollgate --version` prints.
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "tollgate",
        abstract: "An API-key gateway: serves APIs to keys, within their scopes and quotas.",
        discussion: """
            With no subcommand, 'tollgate' runs 'tollgate serve'.
            Store URLs: sqlite:PATH (default sqlite:tollgate.sqlite); memory: for 'serve' only.
            """,
        version: version,
        subcommands: [Serve.self, Keys.self, Usage.self, Routes.self],
        defaultSubcommand: Serve.self
    )

    /// Refuses an unknown command name before parsing: with `serve` as the default command,
    /// the parser would otherwise read `tollgate kyes list` as serve's arguments and print
    /// serve's usage.
    static func main() async {
        if let message = CommandNames.unknownCommand(in: Array(CommandLine.arguments.dropFirst()), root: Tollgate.self) {
            printError(message)
            Foundation.exit(ExitCode.validationFailure.rawValue)
        }
        await main(nil)
    }
}

/// Finds a mistyped command name in a command line.
enum CommandNames {
    /// The error for the first word that should name a subcommand and does not, or `nil`.
    ///
    /// Words are followed down the command tree until an option (left to the parser) or a
    /// command without subcommands (whose arguments are its own).
    static func unknownCommand(in arguments: [String], root: any ParsableCommand.Type) -> String? {
        var command: any ParsableCommand.Type = root
        var path: [String] = [root._commandName]
        for word in arguments {
            let subcommands: [any ParsableCommand.Type] = command.configuration.subcommands
            if word.hasPrefix("-") || subcommands.isEmpty || word == "help" { return nil }
            var names: [String] = []
            var next: (any ParsableCommand.Type)? = nil
            for subcommand in subcommands {
                let name = subcommand._commandName
                names.append(name)
                if name == word { next = subcommand }
            }
            if let next {
                command = next
                path.append(word)
                continue
            }
            // Below the root, a command with a default (`usage`) takes other words as its
            // default's arguments (`tollgate usage ID`).
            if path.count > 1 && command.configuration.defaultSubcommand != nil { return nil }
            return message(unknown: word, in: path.joined(separator: " "), names: names)
        }
        return nil
    }

    static func message(unknown word: String, in command: String, names: [String]) -> String {
        var suggestion = ""
        var best = Int.max
        for name in names {
            let d = distance(name, word)
            if d < best && d <= 2 {
                best = d
                suggestion = "did you mean '\(name)'? "
            }
        }
        return "unknown command \(TollgateError.quote(word)) for '\(command)': \(suggestion)the commands are "
            + names.joined(separator: ", ") + "; '\(command) --help' shows them"
    }

    /// The Levenshtein distance between two short words.
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a.utf8.prefix(64))
        let b = Array(b.utf8.prefix(64))
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1]
            for (j, y) in b.enumerated() {
                current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }
}
