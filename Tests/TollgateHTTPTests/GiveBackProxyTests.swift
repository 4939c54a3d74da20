import Hummingbird
import HummingbirdTesting
import NIOCore
import Prometheus
import Testing
import TollgateAdmin
import TollgateCore
import TollgateHTTP
import TollgateTestSupport

/// `give_back_on_5xx` on a live data plane in front of a live upstream: a request the
/// upstream fails takes nothing from the key; without the option it stays counted.
@Suite struct GiveBackProxyTests {
    /// Answers have 10 s, so that a loaded machine never turns a `500` into a `504`; the
    /// `hasty` route's 1 s is for the one request meant to time out (its upstream takes 3 s).
    static func routes(upstreamPort: Int, downPort: Int) -> LiveRoutes {
        let upstream = Upstream(host: "127.0.0.1", port: upstreamPort, responseTimeout: .seconds(10))
        var givingBack = upstream
        givingBack.giveBackOn5xx = true
        var hasty = givingBack
        hasty.responseTimeout = .seconds(1)
        var down = givingBack
        down.port = downPort
        return LiveRoutes(
            RouteTable(
                routes: [
                    Route(name: "flaky", prefix: "flaky", action: .upstream(givingBack)),
                    Route(name: "hasty", prefix: "hasty", action: .upstream(hasty)),
                    Route(name: "plain", prefix: "plain", action: .upstream(upstream)),
                    Route(name: "down", prefix: "down", action: .upstream(down)),
                ] + Route.defaults)
        )
    }

    /// Memory gives back before the answer leaves. SQLite gives back with the next commit and
    /// Redis with a script call, which the data plane does not wait for, so there the test
    /// waits for the key's count to come back down before the next request.
    func settled(_ kind: GatewayStore, _ store: any KeyStore, _ id: KeyID, used: Int64) async throws {
        guard kind != .memory else { return }
        // Milliseconds normally; long enough for a loaded two-core box.
        let deadline = ContinuousClock.now + .seconds(10)
        while try await store.usage(id: id)?.counters["total"]?.used ?? 0 != used, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    @Test(arguments: GatewayStore.allCases)
    func anUpstreamFailureGivesTheUnitBackOnlyWhereTheRouteSaysSo(kind: GatewayStore) async throws {
        let registry = PrometheusCollectorRegistry()
        let upstream = try await UpstreamServer.start()
        let gone = try await UpstreamServer.start()
        await gone.stop()
        let routes = Self.routes(upstreamPort: upstream.port, downPort: gone.port)
        let givingID: KeyID
        do {
            givingID = try await withGateway(
                kind,
                configure: {
                    $0.routes = routes
                    $0.monitoring = DataPlaneMonitoring(metricsFactory: MetricsEndpoint.metricsFactory(registry: registry))
                }
            ) { port, store in
                let giving = try await makeKey(in: store, limits: ["3/total"], secret: "giving").key
                for _ in 0..<6 {
                    let response = try await get(port, "/flaky/status/500", key: "giving")
                    #expect(response.status == 500 && response.header("x-upstream") == "yes")
                    try await settled(kind, store, giving.id, used: 0)
                }
                #expect(upstream.requests == 6, "every request reached the upstream: none took the key's units")
                #expect(try await get(port, "/flaky/status/503", key: "giving").status == 503)
                try await settled(kind, store, giving.id, used: 0)
                #expect(try await get(port, "/hasty/slow?ms=3000", key: "giving").problemCode == "upstream_timeout")
                try await settled(kind, store, giving.id, used: 0)
                #expect(try await get(port, "/down/x", key: "giving").problemCode == "upstream_unavailable")
                try await settled(kind, store, giving.id, used: 0)
                var usage = try #require(try await store.usage(id: giving.id))
                #expect(usage.counters["total"]?.used ?? 0 == 0)
                #expect(usage.apis["flaky"]?.admitted ?? 0 == 0, "billing charges no failed call")
                #expect(usage.apis["down"]?.admitted ?? 0 == 0)

                // Anything but a 5xx stays counted, a 4xx included, and a 6xx is no 5xx.
                #expect(try await get(port, "/flaky/status/404", key: "giving").status == 404)
                #expect(try await get(port, "/flaky/status/600", key: "giving").status == 600)
                #expect(try await get(port, "/flaky/echo", key: "giving").status == 200)
                #expect(try await get(port, "/flaky/echo", key: "giving").problemCode == "quota_exceeded")
                usage = try #require(try await store.usage(id: giving.id))
                #expect(usage.counters["total"]?.used == 3)
                #expect(usage.apis["flaky"]?.admitted == 3)

                // Without the option, a 500 is a served request like any other.
                let plain = try await makeKey(in: store, limits: ["2/total"], secret: "plain").key
                let before = upstream.requests
                #expect(try await get(port, "/plain/status/500", key: "plain").status == 500)
                #expect(try await get(port, "/plain/status/500", key: "plain").status == 500)
                #expect(try await get(port, "/plain/status/500", key: "plain").status == 429)
                #expect(upstream.requests - before == 2)
                #expect(try await store.usage(id: plain.id)?.counters["total"]?.used == 2)
                return giving.id
            }
            await upstream.stop()
        } catch {
            await upstream.stop()
            throw error
        }
        let app = Application(router: AdminApplication.router(store: MemoryKeyStore()).addMetrics(MetricsEndpoint(registry: registry)))
        let text = try await app.test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
        }
        let samples = try PrometheusText.parse(text)
        #expect(samples[#"tollgate_units_given_back_total{api="flaky"}"#] == 7, "six 500s, a 503")
        #expect(samples[#"tollgate_units_given_back_total{api="hasty"}"#] == 1, "a 504")
        #expect(samples[#"tollgate_units_given_back_total{api="down"}"#] == 1)
        #expect(samples[#"tollgate_units_given_back_total{api="plain"}"#] == 0)
        #expect(!text.contains(givingID.description), "no key id in any label")
    }
}
