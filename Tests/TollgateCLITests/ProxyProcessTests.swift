import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing
import TollgateTestSupport

#if canImport(Glibc)
    import Glibc
#endif

/// The binary with a route file: big bodies both ways in bounded memory, and reloads on
/// `SIGHUP` while clients run.
@Suite struct ProxyProcessTests {
    let directory: URL

    init() throws {
        directory = try TestPaths.temporaryDirectory()
    }

    func writeRoutes(_ text: String, name: String = "routes.yaml") throws -> String {
        let url = directory.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url.path
    }

    /// 100 MB up and 100 MB down through the gateway, whose memory must not grow with them.
    @Test func streamsA100MBBodyEachWayInBoundedMemory() async throws {
        try await LoadLock.exclusively {
            let upstream = try await UpstreamServer.start()
            let config = try writeRoutes(
                """
                routes:
                  - name: files
                    upstream: http://127.0.0.1:\(upstream.port)
                    max_body_bytes: 200000000
                """
            )
            let server = try await ServerProcess(arguments: ["--store", "memory:", "--demo", "--config", config], directory: directory)
            let before = server.residentBytes
            let peak = PeakMemory(server)
            let size = 100 * 1024 * 1024
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await peak.watch() }
                try await TestHTTPConnection.with(port: server.port) { connection in
                    try await connection.writeStreaming(.POST, "/files/upload", headers: [("token", "demo1000")], bodyBytes: size)
                    let (upload, _) = try await connection.readCounting()
                    #expect(upload.status == 200)
                    #expect(upload.body.contains("body-bytes: \(size)\n"), "the upstream received every byte")
                    try await connection.write(.GET, "/files/download?bytes=\(size)", headers: [("token", "demo1000")])
                    let (download, bytes) = try await connection.readCounting()
                    #expect(download.status == 200)
                    #expect(bytes == size)
                }
                peak.stop()
                try await tasks.waitForAll()
            }
            let grown = peak.value - before
            #expect(grown < 40 * 1024 * 1024, "the gateway grew by \(grown / 1024 / 1024) MiB moving 200 MB")
            await server.stop()
            await upstream.stop()
        }
    }

    /// Good files replace the routes, bad ones are refused with the routes kept; no client
    /// connection is dropped either way.
    @Test func sighupReloadsRoutesWithoutDroppingAConnection() async throws {
        let config = try writeRoutes("routes:\n  - { name: alpha, answer: { body: A } }\n")
        let server = try await ServerProcess(arguments: ["--store", "memory:", "--demo", "--config", config], directory: directory)
        let stop = StopFlag()
        try await withThrowingTaskGroup(of: Int.self) { clients in
            // Clients on keep-alive connections throughout: any error or odd status counts.
            for _ in 0..<4 {
                clients.addTask {
                    var failures = 0
                    try await TestHTTPConnection.with(port: server.port) { connection in
                        while !stop.isSet {
                            let status = try await connection.send(.GET, "/alpha", headers: [("token", "demo1000")]).status
                            if status != 200 { failures += 1 }
                        }
                    }
                    return failures
                }
            }
            try await TestHTTPConnection.with(port: server.port) { connection in
                #expect(try await connection.send(.GET, "/beta", headers: [("token", "demo1000")]).status == 404)
                _ = try writeRoutes("routes:\n  - { name: alpha, answer: { body: A2 } }\n  - { name: beta, answer: { body: B } }\n")
                kill(server.pid, SIGHUP)
                #expect(try await eventually { try await connection.send(.GET, "/beta", headers: [("token", "demo1000")]).status == 200 })
                #expect(try await connection.send(.GET, "/alpha", headers: [("token", "demo1000")]).body == "A2")

                _ = try writeRoutes("routes:\n  - name: alpha\n    upstream: ftp://nowhere\n")
                kill(server.pid, SIGHUP)
                #expect(try await eventually { server.stderr.contains("route file refused") })
                #expect(server.stderr.contains("line 3"), "the log names the line: \(server.stderr)")
                #expect(try await connection.send(.GET, "/beta", headers: [("token", "demo1000")]).body == "B", "the routes in force stay")
            }
            stop.set()
            var failures = 0
            for try await count in clients { failures += count }
            #expect(failures == 0)
        }
        #expect(await server.stop() == 0)
    }

    @Test func aBadRouteFileStopsServeAndRoutesCheckNamesTheLines() async throws {
        let bad = try writeRoutes("routes:\n  - name: a\n    upstream: https://x\n  - name: b\n    answer: { status: 9 }\n")
        let check = try await tollgate(["routes", "check", bad])
        #expect(check.status != 0)
        #expect(check.stderr.contains("\(bad):3: upstream https://x: https upstreams are not supported"), "\(check.stderr)")
        #expect(check.stderr.contains("\(bad):5: "))
        let serve = try await tollgate(["serve", "--port", "0", "--admin-port", "0", "--store", "memory:", "--config", bad])
        #expect(serve.status != 0)
        #expect(serve.stderr.contains("\(bad):3:"), "\(serve.stderr)")

        let example = repositoryRoot.appendingPathComponent("docs/examples/tollgate.yaml").path
        let good = try await tollgate(["routes", "check", example])
        #expect(good.status == 0, "\(good.stderr)")
        #expect(
            good.stdout.contains("orders: /v1/orders/* GET,POST,PUT,DELETE -> http://127.0.0.1:8080/orders (prefix stripped)"),
            "\(good.stdout)")
        let givingBack = try writeRoutes("routes:\n  - name: a\n    upstream: http://127.0.0.1:8080\n    give_back_on_5xx: true\n")
        let accepted = try await tollgate(["routes", "check", givingBack])
        #expect(accepted.status == 0, "\(accepted.stderr)")
        #expect(accepted.stdout.contains("a: /a/* any method -> http://127.0.0.1:8080 (unit given back on 5xx)"), "\(accepted.stdout)")
    }
}

/// The repository, for the example files under docs/.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

final class StopFlag: Sendable {
    private let flag = Atomic(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}

/// The highest resident memory a process reached while watched.
final class PeakMemory: Sendable {
    let server: ServerProcess
    private let peak = Atomic(0)
    private let stopped = Atomic(false)

    init(_ server: ServerProcess) { self.server = server }

    var value: Int { max(peak.load(ordering: .relaxed), server.residentBytes) }

    func watch() async throws {
        while !stopped.load(ordering: .relaxed) {
            let now = server.residentBytes
            if now > peak.load(ordering: .relaxed) { peak.store(now, ordering: .relaxed) }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    func stop() { stopped.store(true, ordering: .relaxed) }
}
