import ArgumentParser
import Foundation
import Logging
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import TollgateCore
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
                print("\(file): \(table.routes.count) route\(table.routes.count == 1 ? "" : "s"), valid")
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

/// Reloads the route file on `SIGHUP`, and when the file changes: a valid file replaces
/// the routes for the next request on every connection (none is dropped); a bad one is
/// refused and logged, and the routes in force stay.
///
/// The file is polled once a second (device, inode, modification time, size: a rename
/// over it, as editors and config managers do, shows as well as a write in place) and
/// reloaded once its stamp has held still for one poll, so that a file caught half written
/// is not taken. A file that disappears keeps the routes in force until it is back.
final class RouteReloader: Service, Sendable {
    let path: String
    let routes: LiveRoutes
    let logger: Logger
    let pollInterval: Duration
    /// The stamp of the file last read (loaded or refused), so that each version of the
    /// file is read once, whichever of the signal and the poll saw it first.
    private let lastRead: Mutex<RouteFileStamp?>

    /// - Parameter loaded: the file's stamp taken *before* `routes` were first read from it
    ///   (`nil` if it was not there), not now: a change made during or after that first read
    ///   then differs from it and is reloaded by the first poll, instead of waiting for the
    ///   file to change again.
    init(path: String, routes: LiveRoutes, loaded: RouteFileStamp?, logger: Logger, pollInterval: Duration = .seconds(1)) {
        self.path = path
        self.pollInterval = pollInterval
        self.routes = routes
        self.logger = logger
        lastRead = Mutex(loaded)
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { group in
                group.addTask { await self.followSignals() }
                group.addTask { await self.watchFile() }
            }
        }
    }

    private func followSignals() async {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            reload(stamp: RouteFileStamp(path: path), reason: "SIGHUP")
        }
    }

    private func watchFile() async {
        var previous = RouteFileStamp(path: path)
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: pollInterval)
            } catch {
                return
            }
            let stamp = RouteFileStamp(path: path)
            defer { previous = stamp }
            // Not yet settled, or read already.
            guard stamp == previous, stamp != lastRead.withLock({ $0 }) else { continue }
            guard stamp != nil else {
                lastRead.withLock { $0 = nil }
                logger.warning("the route file is gone; the routes in force are kept", metadata: ["file": "\(path)"])
                continue
            }
            reload(stamp: stamp, reason: "file changed")
        }
    }

    /// Reads the file as it is now; `stamp` was taken before, so that a change made during
    /// the read is seen by the next poll.
    private func reload(stamp: RouteFileStamp?, reason: String) {
        lastRead.withLock { lastRead in
            lastRead = stamp
            do throws(RouteFileError) {
                let table = try RouteFile.load(path: path)
                routes.replace(with: table)
                logger.notice(
                    "routes reloaded", metadata: ["file": "\(path)", "routes": "\(table.routes.count)", "reason": "\(reason)"])
            } catch {
                logger.error(
                    "route file refused; the routes in force are kept",
                    metadata: [
                        "file": "\(path)", "reason": "\(reason)",
                        "problems": "\(error.description.replacingOccurrences(of: "\n", with: "; "))",
                    ]
                )
            }
        }
    }
}

/// What tells one version of the route file from another without reading it.
typealias RouteFileStamp = FileStamp
