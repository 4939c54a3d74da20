import Foundation
import NIOHTTP1
import Testing
import TollgateCore
import TollgateTestSupport

/// `serve --access-log` and `/metrics` on the built binary, as an operator runs them.
@Suite struct MonitoringTests {
    let directory: URL
    let store: String

    init() throws {
        directory = try TestPaths.temporaryDirectory()
        store = "sqlite:" + directory.appendingPathComponent("monitoring.sqlite").path
    }

    @Test func accessLogAndMetricsOnTheRunningServer() async throws {
        let created = try await tollgate([
            "keys", "create", "--json", "--store", store, "--scope", "api1", "--limit", "api1:2/total",
        ])
        #expect(created.status == 0, "\(created.stderr)")
        let object = try #require(try created.json() as? [String: Any])
        let id = try #require(object["id"] as? String)
        let secret = try #require(object["key"] as? String)
        let logPath = directory.appendingPathComponent("access.ndjson").path

        let server = try await ServerProcess(
            arguments: ["--store", store, "--access-log", logPath, "--log-format", "json"], directory: directory)
        for expected in [200, 200, 429] {
            #expect(
                try await httpRequest(port: server.port, .GET, "/api1?token=\(secret)", headers: [("token", secret)]).status == expected)
        }
        #expect(try await httpRequest(port: server.port, .GET, "/api1").status == 401)
        let metrics = try await httpRequest(port: server.adminPort, .GET, "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.body.contains(#"tollgate_requests_total{api="api1",outcome="admitted"} 2"#), "\(metrics.body)")
        #expect(metrics.body.contains(#"tollgate_requests_total{api="api1",outcome="quota_exceeded"} 1"#))
        #expect(metrics.body.contains(#"tollgate_requests_total{api="api1",outcome="missing_api_key"} 1"#))
        #expect(metrics.body.contains(#"tollgate_store_operations_total{store="sqlite",operation="commit"}"#))
        #expect(metrics.body.contains("tollgate_keys_held 1"))
        #expect(!metrics.body.contains(secret) && !metrics.body.contains(id))
        #expect(await server.stop() == 0)

        let text = try String(contentsOfFile: logPath, encoding: .utf8)
        #expect(!text.contains(secret))
        let lines = try text.split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        }
        try #require(lines.count == 4, "\(text)")
        #expect(lines.map { $0["status"] as? Int } == [200, 200, 429, 401])
        #expect(lines.map { $0["outcome"] as? String } == ["admitted", "admitted", "quota_exceeded", "missing_api_key"])
        #expect(lines.map { $0["key"] as? String } == [id, id, id, nil])
        #expect(lines.allSatisfy { $0["path"] as? String == "/api1" && $0["api"] as? String == "api1" && $0["ms"] is Double })
        #expect(!server.stderr.contains(secret))
    }

    @Test func anAccessLogThatCannotBeOpenedStopsStartUp() async throws {
        let path = directory.appendingPathComponent("no/such/folder/access.log").path
        await #expect(throws: (any Error).self) {
            _ = try await ServerProcess(arguments: ["--store", "memory:", "--access-log", path], directory: directory)
        }
        let result = try await tollgate(["serve", "--store", "memory:", "--port", "0", "--admin-port", "0", "--access-log", path])
        #expect(result.status == 1)
        #expect(result.stderr.contains("cannot open the access log at '\(path)'"), "\(result.stderr)")
        #expect(result.stderr.contains("--access-log -"))
    }
}
