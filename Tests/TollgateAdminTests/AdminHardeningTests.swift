import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle
import Synchronization
import Testing
import TollgateCore
import TollgateTestSupport

@testable import TollgateAdmin

/// The admin API as an attacker meets it: rebinding pages, token guessing, bodies that say
/// two things, a connection flood, and exports meant to slow the data plane.
@Suite struct AdminHardeningTests {
    // MARK: Host

    @Test func onlyHostsThatNameTheListenerAreAnswered() async throws {
        var configuration = AdminApplication.Configuration(host: "127.0.0.1", port: 0)
        configuration.adminToken = try AdminToken(adminToken)
        configuration.allowedHosts = AllowedHosts(["admin.example"])
        try await withListener(configuration, store: MemoryKeyStore()) { port, _ in
            let token = ("Authorization", "Bearer \(adminToken)")
            for path in ["/healthz", "/readyz", "/admin/v1/keys", "/admin/v1/openapi.json"] {
                for host in ["attacker.example", "attacker.example:3001", "127.0.0.1.attacker.example", "localhost.attacker.example"] {
                    let response = try await httpRequest(port: port, .GET, path, headers: [("Host", host), token])
                    #expect(response.status == 421, "\(path) for \(host)")
                    #expect(response.problemCode == "host_not_allowed")
                }
                for host in ["localhost", "localhost:3001", "api.localhost", "127.0.0.1:3001", "10.1.2.3", "[::1]:3001", "Admin.Example."] {
                    let response = try await httpRequest(port: port, .GET, path, headers: [("Host", host), token])
                    #expect(response.status == 200, "\(path) for \(host)")
                }
            }
            // HTTP/1.0 without Host: no browser sends that.
            let bare = try await rawExchange(port: port, "GET /healthz HTTP/1.0\r\n\r\n")
            #expect(bare.hasPrefix("HTTP/1.") && bare.contains(" 200 "), "\(bare.prefix(100))")
        }
        #expect(AllowedHosts(["*"]).allows("anything.example"))
        #expect(!AllowedHosts().allows("256.1.1.1"))
        #expect(!AllowedHosts().allows("localhost.example"))
    }

    // MARK: Refused tokens

    /// Guessing is logged with the peer's address, at most a line per 10 s with how many
    /// were refused since; the guesses themselves never.
    @Test func refusedTokensAreLoggedRateLimitedWithoutTheToken() async throws {
        let clock = ManualWallClock(SystemWallClock().now)
        let logs = LogCapture()
        let app = try adminApp(store: MemoryKeyStore(), clock: clock, logs: logs)
        try await app.test(.router) { client in
            for attempt in 0..<50 {
                _ = try await client.execute(uri: "/admin/v1/keys", method: .get, headers: adminHeaders("guess-\(attempt)-secretive"))
            }
            var refused = logs.all.filter { $0.contains("admin API request refused") }
            #expect(refused.count == 1, "\(refused)")
            #expect(refused.first?.contains("code=invalid_admin_token") == true)
            #expect(refused.first?.contains("remote=") == true)
            clock.advance(seconds: 11)
            _ = try await client.execute(uri: "/admin/v1/keys", method: .get)
            refused = logs.all.filter { $0.contains("admin API request refused") }
            #expect(refused.count == 2)
            #expect(refused.last?.contains("refused_since_last_line=49") == true, "\(refused)")
            #expect(refused.last?.contains("code=missing_admin_token") == true)
            #expect(!logs.text.contains("guess-"), "no guess is logged")
            // A request with the right token is not a refusal.
            _ = try await client.execute(uri: "/admin/v1/keys", method: .get, headers: adminHeaders())
            #expect(logs.all.filter { $0.contains("admin API request refused") }.count == 2)
        }
    }

    // MARK: Bodies

    @Test(arguments: [
        (#"{"name":"a","name":"b","scopes":["*"]}"#, "name", "appears twice"),
        (#"{"scopes":["api1"],"\u0073copes":["*"]}"#, "scopes", "appears twice"),
        (#"{"name":"paypal\u202Elanif","scopes":["*"]}"#, "name", "U+202E"),
        (#"{"name":"two\u2028lines","scopes":["*"]}"#, "name", "U+2028"),
        (#"{"name":"zero\u200Bwidth","scopes":["*"]}"#, "name", "U+200B"),
    ])
    func createRefusesBodiesThatMisleadNamingTheField(text: String, field: String, detail: String) async throws {
        let store = MemoryKeyStore()
        let app = try adminApp(store: store)
        try await app.test(.router) { client in
            let response = try await client.execute(
                uri: "/admin/v1/keys", method: .post, headers: adminHeaders(json: true), body: body(text))
            #expect(response.status == .badRequest)
            #expect(response.problemField == field, "\(response.text)")
            #expect((response.problem?["detail"] as? String)?.contains(detail) == true, "\(response.text)")
        }
        #expect(try await store.allKeys().isEmpty)
    }

    /// The documented caps: 64 scopes, 64 limits, 256 characters a pattern.
    @Test func scopesAndPatternsAreCapped() async throws {
        let app = try adminApp(store: MemoryKeyStore())
        let many = (0...64).map { "\"api\($0)\"" }.joined(separator: ",")
        let long = String(repeating: "a", count: 257)
        let cases: [(String, String)] = [
            (#"{"scopes":[\#(many)]}"#, "scopes"),
            (#"{"scopes":["\#(long)"]}"#, "scopes"),
            (#"{"scopes":["*"],"limits":["\#(long):1/day"]}"#, "limits"),
        ]
        try await app.test(.router) { client in
            for (text, field) in cases {
                for method in [HTTPRequest.Method.post] {
                    let response = try await client.execute(
                        uri: "/admin/v1/keys", method: method, headers: adminHeaders(json: true), body: body(text))
                    #expect(response.status == .badRequest)
                    #expect(response.problemField == field, "\(response.text)")
                }
            }
        }
    }

    // MARK: Off

    @Test func anAdminAPIWithoutATokenSaysHowToTurnItOn() async throws {
        let app = try adminApp(store: MemoryKeyStore(), token: nil)
        try await app.test(.router) { client in
            for (path, method) in [
                ("/admin/v1/keys", HTTPRequest.Method.get), ("/admin/v1/keys", .post), ("/admin/v1/keys/k/rotate", .post),
            ] {
                let response = try await client.execute(uri: path, method: method, headers: adminHeaders())
                #expect(response.status == .notFound)
                #expect((response.problem?["detail"] as? String)?.contains("--admin-token-file") == true, "\(response.text)")
            }
        }
    }

    // MARK: The listener

    /// Runs the control plane as `serve` does, on a free port, until `body` returns.
    func withListener<T: Sendable>(
        _ configuration: AdminApplication.Configuration, store: some KeyStore,
        _ body: @Sendable (_ port: Int, _ loop: any EventLoop) async throws -> T
    ) async throws -> T {
        let (running, continuation) = AsyncStream<any Channel>.makeStream()
        let service = AdminApplication.make(configuration: configuration, store: store, logger: LogCapture().logger) { channel in
            continuation.yield(channel)
        }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await service.run() }
            var channels = running.makeAsyncIterator()
            let channel = try #require(await channels.next())
            let port = try #require(channel.localAddress?.port)
            let result = try await body(port, channel.eventLoop)
            group.cancelAll()
            return result
        }
    }

    /// At its cap the control plane closes the connection idle longest, so that a flood
    /// of silent connections neither holds more descriptors than the cap nor locks out a
    /// health check.
    @Test func atItsCapTheControlPlaneClosesTheConnectionIdleLongest() async throws {
        var configuration = AdminApplication.Configuration(host: "127.0.0.1", port: 0, idleTimeout: .seconds(60))
        configuration.maxConnections = 4
        try await withListener(configuration, store: MemoryKeyStore()) { port, _ in
            let first = IdleConnections(port: port, count: 4)
            try await Task.sleep(for: .milliseconds(300))
            #expect(first.closedByServer == 0, "under the cap nothing is closed")
            let flood = IdleConnections(port: port, count: 20)
            try await eventually { flood.closedByServer >= 20 - 4 }
            #expect((0..<4).allSatisfy(first.isClosedByServer), "the oldest idle connections made room")
            #expect(flood.closedByServer >= 20 - 4, "at most the cap stays open")
            let health = try await rawExchange(
                port: port, "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", timeout: .seconds(5))
            #expect(health.hasPrefix("HTTP/1.1 200"), "a health check still gets in: \(health.prefix(100))")
        }
    }

    /// The control plane's channels are on an event loop of its own, never one the data
    /// plane (the shared singleton group) answers on.
    @Test func theControlPlaneRunsOffTheDataPlanesEventLoops() async throws {
        let store = MemoryKeyStore()
        for index in 0..<3 { try await makeKey(in: store, secret: "export-key-\(index)") }
        var configuration = AdminApplication.Configuration(host: "127.0.0.1", port: 0)
        configuration.adminToken = try AdminToken(adminToken)
        try await withListener(configuration, store: store) { port, loop in
            let shared = MultiThreadedEventLoopGroup.singleton.makeIterator().map { ObjectIdentifier($0) }
            #expect(!shared.contains(ObjectIdentifier(loop)))
            let export = try await httpRequest(
                port: port, .GET, "/admin/v1/usage?format=ndjson", headers: [("Authorization", "Bearer \(adminToken)")])
            #expect(export.status == 200)
            #expect(export.body.split(separator: "\n").count == 3)
        }
    }

    /// Exports encode on a thread below the data plane's priority, and read the store one
    /// page at a time across all exports, pausing as long as each read took.
    @Test func exportsEncodeAtALowerPriorityAndReadOneAtATime() async throws {
        let lane = ExportLane()
        #if os(Linux)
            let nice = try await lane.encode { () -> Int in
                let stat = (try? String(contentsOfFile: "/proc/thread-self/stat", encoding: .utf8)) ?? ""
                let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
                return fields.count > 16 ? Int(fields[16]) ?? -100 : -100
            }
            #expect(nice == Int(ExportLane.niceness))
        #endif
        let spans = Spans()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<3 {
                group.addTask {
                    try await lane.read {
                        let start = ContinuousClock.now
                        try await Task.sleep(for: .milliseconds(50))
                        spans.add(start, ContinuousClock.now)
                    }
                }
            }
            try await group.waitForAll()
        }
        let sorted = spans.all.sorted { $0.0 < $1.0 }
        #expect(sorted.count == 3)
        for (earlier, later) in zip(sorted, sorted.dropFirst()) {
            // The next read starts only after the earlier one and a pause as long as it.
            #expect(later.0 - earlier.1 >= .milliseconds(45), "\(later.0 - earlier.1)")
        }
        try await lane.shutdown()
    }
}

/// Polls `condition` for up to five seconds.
func eventually(_ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(5)
    while !condition() && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
}

/// Start and end times recorded from several tasks.
final class Spans: Sendable {
    private let spans = Mutex<[(ContinuousClock.Instant, ContinuousClock.Instant)]>([])
    func add(_ start: ContinuousClock.Instant, _ end: ContinuousClock.Instant) { spans.withLock { $0.append((start, end)) } }
    var all: [(ContinuousClock.Instant, ContinuousClock.Instant)] { spans.withLock { $0 } }
}
