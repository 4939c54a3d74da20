import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOHTTP1
import Prometheus
import Testing
import TollgateAdmin
import TollgateCore
import TollgateHTTP
import TollgateTestSupport

/// Metrics for routed, proxied and forward-auth requests, and for routes a reload adds.
@Suite struct ProxyMetricsTests {
    @Test func proxiedForwardAuthAndReloadedRoutesAreCountedOnceEach() async throws {
        let registry = PrometheusCollectorRegistry()
        let factory = MetricsEndpoint.metricsFactory(registry: registry)
        let upstream = try await UpstreamServer.start()
        let store = MemoryKeyStore()
        try await makeKey(in: store, limits: ["100/day"], secret: "k")
        let routes = ProxyTests.routes(upstreamPort: upstream.port, responseTimeout: .seconds(1))
        do {
            try await withDataPlane(
                store: store,
                configure: {
                    $0.routes = routes
                    $0.monitoring = DataPlaneMonitoring(metricsFactory: factory)
                }
            ) { port in
                #expect(try await get(port, "/kept/a", key: "k").status == 200)
                #expect(try await get(port, "/kept/a").status == 401)
                #expect(try await get(port, "/kept/slow?ms=2000", key: "k").status == 504)
                #expect(try await get(port, "/ping", key: "k").status == 201)
                let allowed = try await httpRequest(port: port, .GET, "/auth", headers: [("token", "k"), ("X-Original-URI", "/kept/b")])
                #expect(allowed.status == 200)
                let unknown = try await httpRequest(port: port, .GET, "/auth", headers: [("token", "k"), ("X-Original-URI", "/nowhere")])
                #expect(unknown.status == 404 && unknown.problemCode == "unknown_route")
                // A route the start-up table did not have: counted under `other`.
                routes.replace(
                    with: RouteTable(
                        routes: routes.current.routes + [Route(name: "fresh", prefix: "fresh", action: .fixed(FixedAnswer(body: "F")))]))
                #expect(try await get(port, "/fresh", key: "k").status == 200)
            }
            await upstream.stop()
        } catch {
            await upstream.stop()
            throw error
        }
        let app = Application(router: AdminApplication.router(store: store).addMetrics(MetricsEndpoint(registry: registry)))
        let text = try await app.test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
        }
        let samples = try PrometheusText.parse(text)
        #expect(samples[#"tollgate_requests_total{api="kept",outcome="admitted"}"#] == 2, "one proxied, one forward-auth")
        #expect(samples[#"tollgate_requests_total{api="kept",outcome="missing_api_key"}"#] == 1)
        #expect(samples[#"tollgate_requests_total{api="kept",outcome="upstream_timeout"}"#] == 1)
        #expect(samples[#"tollgate_requests_total{api="ping",outcome="admitted"}"#] == 1)
        #expect(samples[#"tollgate_requests_total{api="none",outcome="unknown_route"}"#] == 1)
        #expect(samples[#"tollgate_requests_total{api="other",outcome="admitted"}"#] == 1)
        #expect(!text.contains("fresh"))
        let total = samples.filter { $0.key.hasPrefix("tollgate_requests_total{") }.values.reduce(0, +)
        #expect(total == 7, "each answer counted once")
    }
}
