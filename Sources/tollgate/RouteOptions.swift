import ArgumentParser
import TollgateCore
import TollgateHTTP

/// `--config FILE` on the key commands: the route file `serve --config` reads, so that a
/// key's scopes and limits are checked against the APIs the server actually serves.
///
/// A command run apart from the server cannot know its routes (the built-in `api1`..`api3`,
/// or a file), so without this option it leaves out the warnings that depend on them
/// rather than guess.
struct RouteOptions: ParsableArguments {
    @Option(
        name: .customLong("config"),
        help: ArgumentHelp(
            "The route file 'serve --config' reads: warn when a scope or limit reaches none of its routes. Without it, routes are not checked.",
            valueName: "FILE")
    )
    var config: String?

    /// The APIs the file serves; `nil` without `--config`.
    func servedAPIs() throws(TollgateError) -> [KeyAdvice.ServedAPI]? {
        guard let config else { return nil }
        do {
            return try RouteFile.load(path: config).routes.map { KeyAdvice.ServedAPI(name: $0.name, servesBelow: !$0.exact) }
        } catch {
            throw error.oneLine(file: config)
        }
    }
}

extension RouteFileError {
    /// The problems as one line: the first, and how to see them all.
    func oneLine(file: String) -> TollgateError {
        let first = problems.first.map { problem in
            problem.line.map { "\(file):\($0): \(problem.message)" } ?? "\(file): \(problem.message)"
        }
        let more = problems.count > 1 ? " (and \(problems.count - 1) more)" : ""
        return TollgateError(
            .invalidInput,
            "the route file is not valid: \(first ?? file)\(more); 'tollgate routes check \(file)' lists every problem with its line")
    }
}
