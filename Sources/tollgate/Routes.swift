import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import TollgateHTTP
import UnixSignals

/// `tollgate routes`: the route file's tools.
struct Routes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a route file (the file 'serve --config' reads).",
        subcommands: [Check.self]
    )

    /// `tollgate routes check FILE`: every mistake, each with its line.
    struct Check: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Validate a route file and name the line of each error; exits 0 when it is valid."
        )
        @Argument(help: "The route file (YAML).") var file: String

        func run() async throws {
            do {
                let table = try RouteFile.load(path: file)
                print("\(file): \(table.routes.count) routes, valid")
                for route in table.routes.sorted(by: { $0.name < $1.name }) { print("  \(describe(route))") }
                if let auth = table.forwardAuthPath { print("  forward-auth at /\(auth)") }
            } catch {
                for problem in error.problems {
                    printError(problem.line.map { "\(file):\($0): \(problem.message)" } ?? "\(file): \(problem.message)")
                }
                printError(
                    "\(error.problems.count) problem\(error.problems.count == 1 ? "" : "s"); fix them and run 'tollgate routes check \(file)' again"
                )
                throw ExitCode.failure
            }
        }
    }
}

/// One line about a route, for `routes check` and the reload log.
func describe(_ route: Route) -> String {
    let methods = route.methods.map { $0.map(\.rawValue).joined(separator: ",") } ?? "any method"
    let target: String
    switch route.action {
    case .fixed(let answer): target = "answers \(answer.status)"
    case .upstream(let upstream):
        target =
            "-> http://\(upstream.address)\(upstream.basePath)\(upstream.stripPrefix ? " (prefix stripped)" : "")"
            + (upstream.giveBackOn5xx ? " (unit given back on 5xx)" : "")
    }
    return "\(route.name): /\(route.prefix)\(route.exact ? "" : "/*") \(methods) \(target)"
}

/// Reloads the route file on `SIGHUP`: a valid file replaces the routes for the next
/// request on every connection (none is dropped); a bad one is refused and logged, and
/// the routes in force stay.
struct RouteReloader: Service {
    let path: String
    let routes: LiveRoutes
    let logger: Logger

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            do {
                let table = try RouteFile.load(path: path)
                routes.replace(with: table)
                logger.notice("routes reloaded", metadata: ["file": "\(path)", "routes": "\(table.routes.count)"])
            } catch {
                logger.error(
                    "route file refused; the routes in force are kept",
                    metadata: ["file": "\(path)", "problems": "\(error.description.replacingOccurrences(of: "\n", with: "; "))"]
                )
            }
        }
    }
}
