import Foundation
import NIOCore
import NIOHTTP1
import Prometheus
import ServiceLifecycle
import Testing
import TollgateAdmin
import TollgateCore
import TollgateHTTP
import TollgateTestSupport

/// The access log on a real data plane: its lines, its secrecy, and a sink that blocks.
@Suite struct AccessLogTests {
    /// Runs a data plane with `log` as `serve` does (the log starts first and stops last).
    func withLoggedDataPlane<T: Sendable>(
        store: some KeyStore,
        log: AccessLog,
        factory: PrometheusMetricsFactory? = nil,
        _ body: (Int) async throws -> T
    ) async throws -> T {
        try await withDataPlane(store: store, services: [log]) { configuration in
            configuration.monitoring = DataPlaneMonitoring(metricsFactory: factory, accessLog: log)
        } _: { port in
            try await body(port)
        }
    }

    @Test(arguments: AccessLogFormat.allCases)
    func oneLinePerRequestWithItsFieldsAndNeverTheSecret(format: AccessLogFormat) async throws {
        let directory = try TestPaths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("access.log").path
        let log = try AccessLog(configuration: .init(destination: .file(path), format: format), logger: quietLogger)
        let store = MemoryKeyStore()
        let (key, secret) = try await makeKey(in: store, scopes: ["api1"], limits: ["api1:1/total"])
        try await withLoggedDataPlane(store: store, log: log) { port async throws in
            // The secret in a header, and in a query string (which must never be logged).
            #expect(
                try await httpRequest(port: port, .GET, "/api1?key=\(secret)", headers: [("authorization", "Bearer \(secret)")]).status
                    == 200)
            #expect(try await httpRequest(port: port, .GET, "/api1", headers: [("x-api-key", secret)]).status == 429)
            #expect(try await httpRequest(port: port, .GET, "/api2", headers: [("token", secret)]).status == 403)
            #expect(
                try await httpRequest(port: port, .GET, "/api1", headers: [("token", "tg_000000000000000000000000000000")]).status == 401)
            #expect(try await httpRequest(port: port, .POST, "/api1").status == 405)
            #expect(try await httpRequest(port: port, .GET, "/healthz").status == 200)
        }
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(!text.contains(secret))
        #expect(!text.contains("key="))
        #expect(!text.contains("tg_000000000000000000000000000000"))
        let lines = text.split(separator: "\n").map(String.init)
        try #require(lines.count == 6, "\(text)")
        // key, api, method, path, status, outcome
        let expected: [(String?, String?, String, String, Int, String)] = [
            (key.id.rawValue, "api1", "GET", "/api1", 200, "admitted"),
            (key.id.rawValue, "api1", "GET", "/api1", 429, "quota_exceeded"),
            (key.id.rawValue, "api2", "GET", "/api2", 403, "scope_denied"),
            (nil, "api1", "GET", "/api1", 401, "invalid_api_key"),
            (nil, "api1", "POST", "/api1", 405, "method_not_allowed"),
            (nil, nil, "GET", "/healthz", 200, "health"),
        ]
        for (line, want) in zip(lines, expected) {
            let fields = try Self.fields(of: line, format: format)
            #expect(fields.key == want.0, "\(line)")
            #expect(fields.api == want.1, "\(line)")
            #expect(fields.method == want.2, "\(line)")
            #expect(fields.path == want.3, "\(line)")
            #expect(fields.status == want.4, "\(line)")
            #expect(fields.outcome == want.5, "\(line)")
            #expect(fields.milliseconds >= 0 && fields.milliseconds < 10_000, "\(line)")
            #expect(try Timestamp(parsing: fields.time, now: SystemWallClock().now).secondsSinceEpoch > 0)
        }
    }

    typealias Fields = (
        time: String, key: String?, api: String?, method: String, path: String, status: Int, outcome: String, milliseconds: Double
    )

    static func fields(of line: String, format: AccessLogFormat) throws -> Fields {
        switch format {
        case .text:
            let parts = line.split(separator: " ").map(String.init)
            try #require(parts.count == 8)
            func optional(_ text: String) -> String? { text == "-" ? nil : text }
            return (
                parts[0], optional(parts[1]), optional(parts[2]), parts[3], parts[4], try #require(Int(parts[5])), parts[6],
                try #require(Double(parts[7]))
            )
        case .json:
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(Set(object.keys) == ["time", "key", "api", "method", "path", "status", "outcome", "ms"])
            return (
                try #require(object["time"] as? String), object["key"] as? String, object["api"] as? String,
                try #require(object["method"] as? String), try #require(object["path"] as? String),
                try #require(object["status"] as? Int), try #require(object["outcome"] as? String),
                try #require(object["ms"] as? Double)
            )
        }
    }

    /// A FIFO whose reader never reads (or that nobody opened): the pipe fills, the queue
    /// fills, lines are dropped and counted, and every request is still answered at once.
    @Test(arguments: [true, false])
    func aBlockedSinkDoesNotStallTheDataPlane(readerOpen: Bool) async throws {
        let directory = try TestPaths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("access.fifo").path
        #expect(mkfifo(path, 0o600) == 0)
        // Opened for reading and never read: writes fill the pipe (64 KiB), then block.
        let reader = readerOpen ? open(path, O_RDONLY | O_NONBLOCK) : -1
        defer { if reader >= 0 { close(reader) } }
        let registry = PrometheusCollectorRegistry()
        let factory = MetricsEndpoint.metricsFactory(registry: registry)
        var configuration = AccessLog.Configuration(destination: .file(path))
        configuration.capacity = 16
        configuration.shutdownGrace = .milliseconds(200)
        let log = try AccessLog(configuration: configuration, metricsFactory: factory, logger: quietLogger)
        let store = MemoryKeyStore()
        // Long paths (404s, logged up to 1 KiB each): a few hundred lines overflow the pipe.
        let longPath = "/" + String(repeating: "x", count: 1000)
        let requests = 400
        let started = ContinuousClock.now
        try await withLoggedDataPlane(store: store, log: log, factory: factory) { port in
            try await TestHTTPConnection.with(port: port) { connection async throws in
                for _ in 0..<requests {
                    #expect(try await connection.send(.GET, longPath).status == 404)
                }
            }
        }
        let elapsed = ContinuousClock.now - started
        #expect(log.droppedCount > 0)
        #expect(log.droppedCount < requests + 1)
        let text = registry.emitToString()
        #expect(text.contains("tollgate_access_log_dropped_total \(log.droppedCount)\n"), "\(text)")
        #expect(text.contains(#"tollgate_requests_total{api="none",outcome="not_found"} \#(requests)"#))
        // 400 loopback requests and a graceful stop bounded by the grace period; a stalled
        // loop would take the 60 s idle timeout or hang.
        #expect(elapsed < .seconds(30))
    }
}
