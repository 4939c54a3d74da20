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
            Store URLs: sqlite:PATH (default sqlite:tollgate.sqlite), redis://HOST:PORT[/DB] (shared by \
            several servers; password in TOLLGATE_REDIS_PASSWORD), memory: (nothing kept; 'serve' only).
            """,
        version: version,
        subcommands: [Serve.self, Keys.self, Usage.self, Routes.self],
        defaultSubcommand: Serve.self
    )

    /// Refuses an unknown command name before parsing: with `serve` as the default command,
    /// the parser would otherwise read `tollgate kyes list` as serve's arguments and print
    /// serve's usage. Errors are reported in one style (see ``CommandLineErrors``).
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if let message = CommandNames.unknownCommand(in: arguments, root: Tollgate.self) {
            printError(message)
            Foundation.exit(ExitCode.validationFailure.rawValue)
        }
        do {
            var command = try await asyncParseAsRoot(arguments)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            CommandLineErrors.exit(with: error, arguments: arguments)
        }
    }
}
