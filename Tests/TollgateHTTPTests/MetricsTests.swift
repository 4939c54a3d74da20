import Foundation
import Hummingbird
import HummingbirdTesting
import NIOHTTP1
import Prometheus
import Testing
import TollgateAdmin
import TollgateCore
import TollgateHTTP
import TollgateRESP
import TollgateRedis
import TollgateSQLite
import TollgateTestSupport

/// `/metrics` after a known set of data-plane requests, each test on its own registry.
@Suite struct MetricsTests {
    /// 3 admitted and 2 quota_exceeded on api1 for one key, then 1 invalid_api_key.
    func sendKnownRequests(port: Int, secret: String) async throws {
        for expected in [200, 200, 200, 429, 429] {
            #expect(try await httpRequest(port: port, .GET, "/api1", headers: [("token", secret)]).status == expected)
        }
        #expect(try await httpRequest(port: port, .GET, "/api1", headers: [("token", "no-such-key-anywhere")]).status == 401)
        #expect(try await httpRequest(port: port, .GET, "/api9").status == 404)
    }

    /// The metrics text, scraped through the control plane's router.
    func scrape(_ endpoint: MetricsEndpoint, store: some KeyStore) async throws -> String {
        let app = Application(router: AdminApplication.router(store: store).addMetrics(endpoint))
        return try await app.test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("text/plain; version=0.0.4") == true)
                return String(buffer: response.body)
            }
        }
    }

    /// Makes a key limited to 3 on api1, sends the known requests through a data plane that
    /// reports to `factory`, and scrapes the registry: the parsed samples and the text.
    func sendKnownRequestsAndScrape(
        store: some KeyStore,
        registry: PrometheusCollectorRegistry,
        factory: PrometheusMetricsFactory,
        heldKeys: (@Sendable () -> Int)? = nil
    ) async throws -> (samples: [String: Double], text: String, key: APIKey, secret: String) {
        let (key, secret) = try await makeKey(in: store, limits: ["api1:3/total"])
        try await withDataPlane(store: store, configure: { $0.monitoring = DataPlaneMonitoring(metricsFactory: factory) }) { port in
            try await sendKnownRequests(port: port, secret: secret)
        }
        let text = try await scrape(MetricsEndpoint(registry: registry, heldKeys: heldKeys), store: store)
        return (try PrometheusText.parse(text), text, key, secret)
    }

    @Test func countsRequestsByAPIAndOutcomeWithoutKeysOrSecrets() async throws {
        let registry = PrometheusCollectorRegistry()
        let factory = MetricsEndpoint.metricsFactory(registry: registry)
        let store = MemoryKeyStore()
        let (samples, text, key, secret) = try await sendKnownRequestsAndScrape(
            store: store, registry: registry, factory: factory)
        #expect(samples[#"tollgate_requests_total{api="api1",outcome="admitted"}"#] == 3)
        #expect(samples[#"tollgate_requests_total{api="api1",outcome="quota_exceeded"}"#] == 2)
        #expect(samples[#"tollgate_requests_total{api="api1",outcome="invalid_api_key"}"#] == 1)
        #expect(samples[#"tollgate_requests_total{api="none",outcome="not_found"}"#] == 1)
        #expect(samples[#"tollgate_requests_total{api="api2",outcome="admitted"}"#] == 0)
        let total = samples.filter { $0.key.hasPrefix("tollgate_requests_total{") }.values.reduce(0, +)
        #expect(total == 7)
        #expect(samples[#"tollgate_request_duration_seconds_count{outcome="admitted"}"#] == 3)
        #expect(samples[#"tollgate_request_duration_seconds_bucket{outcome="admitted",le="+Inf"}"#] == 3)
        #expect((samples[#"tollgate_request_duration_seconds_sum{outcome="admitted"}"#] ?? 0) > 0)
        // The API label holds route names only: unbounded ids and secrets never appear.
        #expect(!text.contains(key.id.rawValue))
        #expect(!text.contains(secret))
        #expect(!text.contains("no-such-key-anywhere"))
        #expect(!text.contains("api9"))
    }

    @Test func sqliteCommitsLookupsAndHeldKeys() async throws {
        let directory = try TestPaths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let registry = PrometheusCollectorRegistry()
        let factory = MetricsEndpoint.metricsFactory(registry: registry)
        var configuration = SQLiteKeyStore.Configuration(path: directory.appendingPathComponent("m.sqlite").path)
        configuration.metrics = StoreMetrics(store: "sqlite", factory: factory)
        let store = try SQLiteKeyStore(configuration: configuration)
        let (samples, text, key, secret) = try await sendKnownRequestsAndScrape(
            store: store, registry: registry, factory: factory, heldKeys: { store.heldKeyCount })
        #expect(samples[#"tollgate_requests_total{api="api1",outcome="admitted"}"#] == 3)
        // Each admitted request waited on a commit; sequential requests, so at least one
        // commit each, and every commit carried them all between them.
        #expect(samples[#"tollgate_store_commit_requests_sum{store="sqlite"}"#] == 3)
        #expect((samples[#"tollgate_store_operations_total{store="sqlite",operation="commit"}"#] ?? 0) >= 3)
        #expect(samples[#"tollgate_store_errors_total{store="sqlite",operation="commit"}"#] == 0)
        #expect(
            samples[#"tollgate_store_duration_seconds_count{store="sqlite",operation="commit"}"#]
                == samples[#"tollgate_store_operations_total{store="sqlite",operation="commit"}"#])
        // The key on its first use and the unknown secret: two keys read from the file.
        #expect(samples[#"tollgate_store_lookups_total{store="sqlite"}"#] == 2)
        #expect(samples["tollgate_keys_held"] == 1)
        #expect(!text.contains(key.id.rawValue))
        #expect(!text.contains(secret))
    }

    @Test(.enabled(if: RedisServer.isAvailable, "redis-server is not installed"))
    func redisScriptsAndLookups() async throws {
        let registry = PrometheusCollectorRegistry()
        let factory = MetricsEndpoint.metricsFactory(registry: registry)
        let url = try #require(await SharedRedis.url(), "redis-server did not start")
        var configuration = RedisKeyStore.Configuration(redis: try RESPConfiguration(url: url))
        configuration.namespace = SharedRedis.uniqueNamespace()
        configuration.metrics = StoreMetrics(store: "redis", factory: factory)
        let store = try RedisKeyStore(configuration: configuration, logger: quietLogger)
        try await store.connect()
        let (samples, text, key, secret) = try await sendKnownRequestsAndScrape(
            store: store, registry: registry, factory: factory)
        #expect(samples[#"tollgate_requests_total{api="api1",outcome="admitted"}"#] == 3)
        #expect(samples[#"tollgate_requests_total{api="api1",outcome="quota_exceeded"}"#] == 2)
        // One admission script per request of a known key; lookups for its first use and
        // the unknown secret.
        #expect(samples[#"tollgate_store_operations_total{store="redis",operation="admit"}"#] == 5)
        #expect(samples[#"tollgate_store_errors_total{store="redis",operation="admit"}"#] == 0)
        #expect(samples[#"tollgate_store_duration_seconds_count{store="redis",operation="admit"}"#] == 5)
        #expect(samples[#"tollgate_store_operations_total{store="redis",operation="lookup"}"#] == 2)
        #expect(samples[#"tollgate_store_lookups_total{store="redis"}"#] == 2)
        #expect(!text.contains(key.id.rawValue))
        #expect(!text.contains(secret))
    }

    @Test func withoutAnEndpointMetricsIsNotFound() async throws {
        let app = Application(router: AdminApplication.router(store: MemoryKeyStore()).addMetrics(nil))
        try await app.test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .notFound)
                #expect(response.headers[.contentType] == "application/problem+json")
            }
        }
    }
}

/// A strict reader of the Prometheus text format: every line a comment or a sample.
enum PrometheusText {
    struct Malformed: Error, CustomStringConvertible {
        var line: String
        var description: String { "not a Prometheus sample: \(line)" }
    }

    /// Sample (name with its labels, as written) to value.
    static func parse(_ text: String) throws -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " ") else { throw Malformed(line: String(line)) }
            let series = String(line[..<space])
            guard let value = Double(line[line.index(after: space)...]),
                series.range(of: #"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*",?)*\})?$"#, options: .regularExpression)
                    != nil,
                samples[series] == nil
            else { throw Malformed(line: String(line)) }
            samples[series] = value
        }
        return samples
    }
}
