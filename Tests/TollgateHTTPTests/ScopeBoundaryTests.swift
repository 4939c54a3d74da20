import NIOHTTP1
import Testing
import TollgateCore
import TollgateHTTP
import TollgateTestSupport

/// Scopes and limits on a live data plane that serves names sharing a prefix
/// (`/api`, `/api1`, `/api10`, `/api1/x`): a trailing `*` stops at a `/` boundary.
@Suite struct ScopeBoundaryTests {
    static let routes = RouteTable(
        routes: ["api", "api1", "api10", "api1/x", "api2"].map {
            Route(name: $0, prefix: $0, exact: true, methods: [.GET, .HEAD], action: .fixed(FixedAnswer(body: $0.uppercased())))
        }
    )

    @Test(arguments: GatewayStore.allCases)
    func aTrailingStarNeverReachesALongerName(kind: GatewayStore) async throws {
        try await withGateway(kind, configure: { $0.routes = LiveRoutes(Self.routes) }) { port, store in
            try await makeKey(in: store, scopes: ["api1*"], secret: "tree")
            try await makeKey(in: store, scopes: ["api*"], secret: "api-star")
            try await makeKey(in: store, scopes: ["ap*", "a*"], secret: "short-stars")
            try await makeKey(in: store, scopes: ["api1/"], secret: "below")
            let expected: [(secret: String, path: String, status: Int)] = [
                ("tree", "/api1", 200), ("tree", "/api1/x", 200), ("tree", "/api10", 403), ("tree", "/api", 403),
                ("api-star", "/api", 200), ("api-star", "/api1", 403), ("api-star", "/api10", 403), ("api-star", "/api2", 403),
                ("short-stars", "/api", 403), ("short-stars", "/api1", 403), ("short-stars", "/api2", 403),
                ("below", "/api1/x", 200), ("below", "/api1", 403), ("below", "/api10", 403),
            ]
            for row in expected {
                #expect(try await get(port, row.path, key: row.secret).status == row.status, "\(row.secret) on \(row.path)")
            }
        }
    }

    @Test(arguments: GatewayStore.allCases)
    func aStarLimitDoesNotMeterLongerNames(kind: GatewayStore) async throws {
        try await withGateway(kind, configure: { $0.routes = LiveRoutes(Self.routes) }) { port, store in
            try await makeKey(in: store, scopes: ["*"], limits: ["api1*:1/total"], secret: "k")
            for _ in 0..<3 {
                let unmetered = try await get(port, "/api10", key: "k")
                #expect(unmetered.status == 200)
                #expect(unmetered.header("ratelimit") == nil, "api1* must not meter /api10")
            }
            #expect(try await get(port, "/api1", key: "k").status == 200)
            #expect(try await get(port, "/api1/x", key: "k").status == 429)
            #expect(try await get(port, "/api10", key: "k").status == 200)
        }
    }
}
