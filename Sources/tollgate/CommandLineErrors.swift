import ArgumentParser
import Foundation
import TollgateCore

/// Reports what went wrong on a command line in the CLI's one style: a first line
/// `tollgate: what is wrong; what to do` on stderr, with nothing before it. A mistyped
/// command line (exit status 64) keeps ArgumentParser's usage block after that line; any
/// other error is that one line alone (exit status 1).
enum CommandLineErrors {
    static func exit(with error: any Error, arguments: [String]) -> Never {
        let code = Tollgate.exitCode(for: error)
        // Help, --version, and errors a command has reported itself (`ExitCode`).
        if code == .success || error is ExitCode { Tollgate.exit(withError: error) }
        let message = Tollgate.message(for: error)
        if code == .validationFailure {
            printError(firstLine(message, arguments: arguments))
            // ArgumentParser's text is "Error: MESSAGE", an optional "Help: ..." line, then
            // the usage; the first line is replaced by the one above.
            var full = Tollgate.fullMessage(for: error)
            let prefix = Tollgate._errorPrefix + message + "\n"
            if full.hasPrefix(prefix) { full.removeFirst(prefix.count) }
            if !full.isEmpty { FileHandle.standardError.write(Data((full.hasSuffix("\n") ? full : full + "\n").utf8)) }
        } else {
            let line = message.isEmpty ? "\(error)" : message
            printError(line.split(whereSeparator: \.isNewline).joined(separator: "; "))
        }
        Foundation.exit(code.rawValue)
    }

    /// ArgumentParser's message made to say what to do. Its own messages start with a
    /// capital ("Unknown option '--jsn'"); the commands' own checks are written in the
    /// house style already and are kept as they are.
    static func firstLine(_ message: String, arguments: [String]) -> String {
        guard let first = message.first, first.isUppercase else { return message }
        let (path, options) = CommandNames.commandReached(by: arguments, root: Tollgate.self)
        let help = "'\(path) --help' lists the options"
        if let option = quoted(after: "Unknown option '", in: message) {
            let suggestion = Spelling.closest(to: option, among: options).map { "did you mean '\($0)'? " } ?? ""
            return "unknown option \(TollgateError.quote(option)) for '\(path)': \(suggestion)\(help)"
        }
        var text = first.lowercased() + message.dropFirst()
        if let option = quoted(after: "Missing value for '", in: message).map({ String($0.prefix { $0 != " " }) }),
            let index = arguments.firstIndex(of: option), index + 1 < arguments.count, arguments[index + 1].hasPrefix("-")
        {
            // `--limit -1/day`: the value was read as an option.
            let value = TollgateError.excerpt(arguments[index + 1])
            return text + ": '\(value)' starts with '-', so it was read as an option; write \(option)=\(value)"
        }
        text += "; \(help)"
        return text
    }

    /// The text between `marker` and the next `'`.
    private static func quoted(after marker: String, in message: String) -> String? {
        guard let start = message.range(of: marker)?.upperBound else { return nil }
        return String(message[start...].prefix { $0 != "'" })
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

    /// The command a command line names (`tollgate usage`) and the long options it takes,
    /// for messages about a mistyped option. A command with a default subcommand takes its
    /// default's options.
    static func commandReached(by arguments: [String], root: any ParsableCommand.Type) -> (path: String, options: [String]) {
        var command: any ParsableCommand.Type = root
        var path: [String] = [root._commandName]
        for word in arguments {
            guard !word.hasPrefix("-"), let next = command.configuration.subcommands.first(where: { $0._commandName == word }) else {
                break
            }
            command = next
            path.append(word)
        }
        let optionsOf = command.configuration.defaultSubcommand ?? command
        return (path.joined(separator: " "), longOptions(in: Tollgate.helpMessage(for: optionsOf)))
    }

    /// Every `--name` a help text mentions.
    static func longOptions(in help: String) -> [String] {
        var options: [String] = []
        var rest = Substring(help)
        while let start = rest.range(of: "--") {
            let name = rest[start.upperBound...].prefix { $0.isLetter || $0.isNumber || $0 == "-" }
            if let first = name.first, first.isLetter, !options.contains("--" + name) { options.append("--" + name) }
            rest = rest[start.upperBound...].dropFirst(name.count)
        }
        return options
    }

    static func message(unknown word: String, in command: String, names: [String]) -> String {
        let suggestion = Spelling.closest(to: word, among: names).map { "did you mean '\($0)'? " } ?? ""
        return "unknown command \(TollgateError.quote(word)) for '\(command)': \(suggestion)the commands are "
            + names.joined(separator: ", ") + "; '\(command) --help' shows them"
    }
}

/// Near misses of what the user meant: a command, an option, a member of an import line.
enum Spelling {
    /// The candidate nearest to `word` within two edits, or that begins with it or it
    /// begins with (`expires` for `expires_at`), if any; the first of equals.
    static func closest(to word: String, among candidates: [String]) -> String? {
        var best: (name: String, distance: Int)? = nil
        for name in candidates {
            let prefix = word.count >= 3 && (name.hasPrefix(word) || word.hasPrefix(name))
            let d = prefix ? 1 : distance(name, word)
            if d <= 2 && d < (best?.distance ?? Int.max) { best = (name, d) }
        }
        return best?.name
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
