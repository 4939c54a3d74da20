import Foundation
import NIOHTTP1
import Testing
import TollgateTestSupport

/// `serve --config` watches its route file: a change is taken without a signal, with the
/// same rules as `SIGHUP` (a bad file is refused, the routes in force stay).
@Suite struct RouteWatchTests {
    let directory: URL

    init() throws {
        directory = try TestPaths.temporaryDirectory()
    }

    func write(_ text: String, to path: String, atomically: Bool = false) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: atomically ? .atomic : [])
    }

    @Test func aChangedRouteFileIsReloadedWithoutASignal() async throws {
        let config = directory.appendingPathComponent("routes.yaml").path
        try write("routes:\n  - { name: alpha, answer: { body: A } }\n", to: config)
        let server = try await ServerProcess(arguments: ["--store", "memory:", "--demo", "--config", config], directory: directory)
        let key = [("token", "demo1000")]
        try await TestHTTPConnection.with(port: server.port) { connection in
            #expect(try await connection.send(.GET, "/beta", headers: key).status == 404)

            // Written in place.
            try write("routes:\n  - { name: alpha, answer: { body: A } }\n  - { name: beta, answer: { body: B } }\n", to: config)
            let written = ContinuousClock.now
            #expect(try await eventually { try await connection.send(.GET, "/beta", headers: key).status == 200 })
            #expect(ContinuousClock.now - written < .seconds(5), "taken within two polls (about 2 s), with room for a loaded machine")

            // Renamed over it, as editors and config managers do.
            try write("routes:\n  - { name: beta, answer: { body: B2 } }\n", to: config, atomically: true)
            #expect(try await eventually { try await connection.send(.GET, "/beta", headers: key).body == "B2" })
            #expect(try await connection.send(.GET, "/alpha", headers: key).status == 404)

            // A bad file: refused and logged once, the routes in force stay.
            try write("routes:\n  - name: beta\n    upstream: ftp://nowhere\n", to: config)
            #expect(try await eventually { server.stderr.contains("route file refused") })
            #expect(server.stderr.contains("file changed") && server.stderr.contains("line 3"), "\(server.stderr)")
            #expect(try await connection.send(.GET, "/beta", headers: key).body == "B2")
            try await Task.sleep(for: .milliseconds(2500))
            let refusals = server.stderr.components(separatedBy: "route file refused").count - 1
            #expect(refusals == 1, "one version of the file is read once: \(server.stderr)")

            // Gone: the routes stay; back and fixed: taken.
            try FileManager.default.removeItem(atPath: config)
            #expect(try await eventually { server.stderr.contains("the route file is gone") })
            #expect(try await connection.send(.GET, "/beta", headers: key).body == "B2")
            try write("routes:\n  - { name: gamma, answer: { body: G } }\n", to: config)
            #expect(try await eventually { try await connection.send(.GET, "/gamma", headers: key).body == "G" })
        }
        #expect(await server.stop() == 0)
    }
}
